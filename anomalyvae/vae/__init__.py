"""The VAE: the networks and their ELBO, the training loop, resuming, distributed training, device and threads."""
