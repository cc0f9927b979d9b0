"""The VAE: encoder -> (mu, logvar), reparameterised z, decoder -> likelihood parameters; and its ELBO terms.

Images (C, H, W) use a Bernoulli likelihood of grey levels in [0, 1] (as in the seeds and the paper);
feature vectors (D,) are standardised inside the model and use a Gaussian likelihood with a learnt scale
per feature. `forward(x) -> (out, mu, logvar)` where `out` parameterises p(x | z) (logits or means).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from .shapes import conv_depth

def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps keeps sampling differentiable in mu and logvar (Kingma & Welling 2014, sec. 2.4).

    With a generator the noise is drawn on the generator's device (the CPU's for validation), so fixed-seed
    noise is the same whichever device the model runs on."""
    if generator is None:
        eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device)
    else:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=generator.device).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def as_float(t: torch.Tensor) -> torch.Tensor:
    """bfloat16 (autocast) -> float32; float64 (feature scoring) stays float64."""
    return t if t.dtype == torch.float64 else t.float()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per sample, closed form: Kingma & Welling 2014, appendix B."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


class _VAE(nn.Module):
    """What both architectures share: the likelihood, the input preparation and the forward pass."""

    input_kind = "images"

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.code(self.hidden(x))

    def code(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's last hidden layer -> (mu, logvar)."""
        return self.fc_mu(h), self.fc_logvar(h)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        mu, logvar = as_float(mu), as_float(logvar)  # bfloat16 under autocast; KL and sampling stay float32
        return self.decode(reparameterize(mu, logvar, generator)), mu, logvar

    def nll_terms(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x_i | z) per element (pixel or feature), in nats."""
        # float32 even under bfloat16 autocast: a sum over 784 pixels in bfloat16 loses whole nats
        out = as_float(out)
        if self.input_kind == "images":
            return F.binary_cross_entropy_with_logits(out, x, reduction="none")
        log_scale = self.log_scale.clamp(-5.0, 5.0)
        return 0.5 * ((x - out) * torch.exp(-log_scale)).pow(2) + log_scale + 0.5 * math.log(2 * math.pi)

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) per sample: the reconstruction term of the ELBO."""
        return self.nll_terms(out, x).flatten(1).sum(1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The reconstruction E[x | z] in the model's input space."""
        return torch.sigmoid(out) if self.input_kind == "images" else out

    def prepare(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw input -> what the network sees, on the model's device: uint8 pixels / 255, float pixels as they
        are (already in [0, 1]), features standardised with the training mean and scale."""
        p = next(self.parameters())
        x = raw.to(p.device, non_blocking=True)  # uint8 moves a quarter of the bytes of float32
        x = x.to(p.dtype).div_(255.0) if x.dtype == torch.uint8 else x.to(p.dtype)
        if self.input_kind == "features":
            x = torch.where(self.x_log.bool(), torch.sign(x) * torch.log1p(x.abs()), x)  # skewed counts, amounts
            x = (x - self.x_mean) / self.x_std
        return x


class MLPVAE(_VAE):
    """The seeds' model (Kingma & Welling 2014, as in pytorch/examples): 784-400-20 with ReLU."""

    def __init__(self, shape: tuple[int, ...], hidden: int = 400, latent_dim: int = 20, input_kind: str = "images"):
        super().__init__()
        d = math.prod(shape)
        self.shape, self.input_kind = tuple(shape), input_kind
        self.fc1 = nn.Linear(d, hidden)
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden)
        self.fc4 = nn.Linear(hidden, d)
        if input_kind == "features":
            self.log_scale = nn.Parameter(torch.zeros(d))
            self.register_buffer("x_mean", torch.zeros(d))
            self.register_buffer("x_std", torch.ones(d))
            self.register_buffer("x_log", torch.zeros(d))  # 1: the feature is read as sign(x) log(1 + |x|)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden layer (N, hidden), after its ReLU: what mu and logvar are read from."""
        return F.relu(self.fc1(x.flatten(1)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc4(F.relu(self.fc3(z))).view(-1, *self.shape)


class ConvVAE(_VAE):
    """Stride-2 convolutions (as many as the size needs, channels doubling from `width`, capped at 8x) and a
    dense layer each way: local stroke and texture features an MLP would learn per pixel."""

    def __init__(self, shape: tuple[int, int, int], width: int = 16, latent_dim: int = 16, hidden: int = 256):
        super().__init__()
        c_in, size, _ = shape
        k = conv_depth(size)
        ch = [min(width * 2 ** i, 8 * width) for i in range(k)]
        s = size // 2 ** k
        self.feat = (ch[-1], s, s)
        enc: list[nn.Module] = []
        for a, b in zip([c_in, *ch[:-1]], ch):
            enc += [nn.Conv2d(a, b, 4, 2, 1), nn.ReLU()]
        self.enc = nn.Sequential(*enc, nn.Flatten(), nn.Linear(ch[-1] * s * s, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.fc_dec = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, ch[-1] * s * s))
        dec: list[nn.Module] = [nn.ReLU()]
        for a, b in zip(ch[::-1], [*ch[::-1][1:], c_in]):
            dec += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.ReLU()]
        self.dec = nn.Sequential(*dec[:-1])  # no ReLU on the logits

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden layer (N, conv_hidden), after its ReLU: what mu and logvar are read from."""
        return self.enc(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(self.fc_dec(z).view(-1, *self.feat))


LABEL_WEIGHT = 10.0  # the classification head's cross-entropy weight against the ELBO's nats. MNIST without
# digit 9 (or 1), 6 epochs: weight 1 reached 92% accuracy on the normal test digits and AUROC 0.86 / 0.95 for
# the entropy score, weight 10 reached 97% and 0.94 / 0.98 (python benchmarks/probes/label_head.py mnist 9,1 W)
# The head reads the encoder's last hidden layer, not mu: the entropy of a head on it gave digit-9 AUROC 0.967
# (recall 0.80 at 5 % FPR) where the head on mu gave 0.948 (benchmarks/probes/cvae.py, results/probes/)


def build_model(cfg: Config, shape: tuple[int, ...], classes: list[int] | None = None,
                head_on: str = "hidden") -> _VAE:
    """The network for one input shape: (C, H, W) images or (D,) feature vectors; with `classes` (the normal
    classes' labels, use_labels) a linear classification head on the encoder's last hidden layer (`head_on`
    "mu": on the code, as models saved before it read), and the labels as the buffer `classes`."""
    if cfg.input_kind == "features":
        model = MLPVAE(shape, cfg.hidden, cfg.latent_dim, "features")
    elif cfg.arch == "mlp":
        model = MLPVAE(shape, cfg.hidden, cfg.latent_dim)
    else:
        model = ConvVAE(shape, cfg.width, cfg.latent_dim, cfg.conv_hidden)
    if classes is not None:
        model.head_on = head_on
        model.head = nn.Linear(model.fc_mu.in_features if head_on == "hidden" else cfg.latent_dim, len(classes))
        model.register_buffer("classes", torch.as_tensor(sorted(classes), dtype=torch.int64))
    return model


def class_logits(model: _VAE, hidden: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """The classification head's logits (N, n_classes) over the model's normal classes, from the encoder's last
    hidden layer (or mu, for a head on the code)."""
    return as_float(model.head(hidden if model.head_on == "hidden" else mu))


def class_loss(model: _VAE, hidden: torch.Tensor, mu: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of the head for labels given as class values (mapped to the head's columns)."""
    return F.cross_entropy(class_logits(model, hidden, mu), torch.searchsorted(model.classes, labels),
                           reduction="none")


def elbo_terms(model: _VAE, x: torch.Tensor, generator: torch.Generator | None = None, step=None,
               free_bits: float = 0.0, labels: torch.Tensor | None = None):
    """Per-sample reconstruction NLL and KL for one reparameterised sample; their sum is the negative ELBO.

    `step` is the module to call (the model itself, or its DistributedDataParallel wrapper under torchrun).
    `free_bits` > 0 gives the training objective's KL instead: each latent dimension's KL, averaged over the
    batch, counts as at least `free_bits` nats (Kingma et al. 2016, eq. 15), so no dimension is pushed to the
    prior for nothing; the returned per-sample KL then sums the floored dimensions.
    With `labels` (use_labels) a third term is returned: the classification head's cross-entropy (labels are
    not supported under torchrun, so the model's own parts run here and give the hidden layer the head reads)."""
    if labels is not None:
        hidden = model.hidden(x)
        mu, logvar = model.code(hidden)
        mu, logvar = as_float(mu), as_float(logvar)
        out = model.decode(reparameterize(mu, logvar, generator))
    else:
        out, mu, logvar = (step or model)(x, generator)
    if free_bits <= 0:
        kl = kl_divergence(mu, logvar)
    else:
        per_dim = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # (N, d)
        floored = torch.maximum(per_dim.mean(0), torch.full_like(per_dim[0], free_bits))
        kl = per_dim.sum(1) - per_dim.mean(0).sum() + floored.sum()
    if labels is None:
        return model.nll(out, x), kl
    return model.nll(out, x), kl, class_loss(model, hidden, mu, labels)
