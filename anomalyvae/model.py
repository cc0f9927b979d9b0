"""The VAE: encoder -> (mu, logvar), reparameterised z, decoder -> Bernoulli logits; and its ELBO terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import Config
from .errors import AnomalyVAEError


class MLPVAE(nn.Module):
    """The seeds' model (Kingma & Welling 2014, as in pytorch/examples): 784-400-20 with ReLU."""

    def __init__(self, image_size: int = 28, hidden: int = 400, latent_dim: int = 20):
        super().__init__()
        d = image_size * image_size
        self.shape = (1, image_size, image_size)
        self.fc1 = nn.Linear(d, hidden)
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden)
        self.fc4 = nn.Linear(hidden, d)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x.flatten(1)))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc4(F.relu(self.fc3(z))).view(-1, *self.shape)


class ConvVAE(nn.Module):
    """Two stride-2 convolutions and a dense layer each way: local stroke features an MLP learns per pixel."""

    def __init__(self, image_size: int = 28, channels: int = 16, latent_dim: int = 16, hidden: int = 256):
        super().__init__()
        if image_size % 4:
            raise AnomalyVAEError(f"conv model needs an image_size divisible by 4, got {image_size}; use 28")
        c, s = channels, image_size // 4
        self.feat = (2 * c, s, s)
        self.enc = nn.Sequential(
            nn.Conv2d(1, c, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * c * s * s, hidden), nn.ReLU(),
        )
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.fc_dec = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * c * s * s))
        self.dec = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, 2, 1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(self.fc_dec(z).view(-1, *self.feat))


def build_model(cfg: Config) -> nn.Module:
    if cfg.arch == "mlp":
        return MLPVAE(cfg.image_size, cfg.hidden, cfg.latent_dim)
    return ConvVAE(cfg.image_size, cfg.channels, cfg.latent_dim, cfg.conv_hidden)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps keeps sampling differentiable in mu and logvar (Kingma & Welling 2014, sec. 2.4).

    With a generator the noise is drawn on the generator's device (the CPU's for validation), so fixed-seed
    noise is the same whichever device the model runs on."""
    if generator is None:
        eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device)
    else:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=generator.device).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def to_input(images: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, H, W) in [0, 1] on `device`: the only preprocessing between pixels and
    model. Moved as uint8, a quarter of the bytes of float32."""
    if device is not None:
        images = images.to(device, non_blocking=True)
    return images.unsqueeze(1).float().div_(255.0)


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per sample, in nats: Bernoulli likelihood of grey levels, as in the seeds and the paper."""
    # float32 even under bfloat16 autocast: a sum over 784 pixels in bfloat16 loses whole nats
    return F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").flatten(1).sum(1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per sample, closed form: Kingma & Welling 2014, appendix B."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def elbo_terms(model: nn.Module, x: torch.Tensor, generator: torch.Generator | None = None):
    """Per-sample reconstruction NLL and KL for one reparameterised sample; their sum is the negative ELBO."""
    mu, logvar = model.encode(x)
    mu, logvar = mu.float(), logvar.float()  # bfloat16 under autocast; KL and sampling stay float32
    z = reparameterize(mu, logvar, generator)
    return reconstruction_nll(model.decode(z), x), kl_divergence(mu, logvar)
