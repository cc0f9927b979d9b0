"""Evaluation: metrics, the threshold, anomaly maps drawn as heat maps, figures and the HTML report."""
