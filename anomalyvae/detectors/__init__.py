"""Detectors: what each fits from the normal data besides the network, its scores, maps and explanations.

What every detector shares (the memory bank and its search) lives here too, below them."""
