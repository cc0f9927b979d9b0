"""Per-sample anomaly scores (higher = more anomalous), all deterministic for a given input and model.

- recon:    -log p(x | z=mu), the Bernoulli reconstruction error at the posterior mean, in nats.
- elbo:     recon + KL(q(z|x) || N(0, I)): the negative ELBO evaluated at z = mu (no sampling noise).
- iwae:     the importance-weighted bound (Burda et al. 2016) with K samples; the K noise vectors are
            drawn once from a fixed seed and shared by every input, so a score never depends on its batch.
- blur:     squared error between input and reconstruction after a 5x5 box blur of both: unlike the
            Bernoulli likelihood it does not reward simple images, and it forgives one-pixel misalignment.
- latent:   -log density of mu under a Gaussian mixture fitted to the mu of the normal training data:
            an input whose code lies where no normal code lies is anomalous even if it reconstructs well.
- knn:      mean distance from mu to its k nearest codes of the normal training data (non-parametric).
- combined: the sum of the components named by Config.combine, each standardised with its mean and
            standard deviation on the held-out normal data (never on anomalies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import device
from .config import Config
from .model import kl_divergence, reconstruction_nll, to_input
from .runtime import autocast, resolve_precision

ALL_SCORES = ("recon", "elbo", "iwae", "blur", "latent", "knn", "combined")
CHEAP_SCORES = ("recon", "elbo", "blur", "latent", "knn", "combined")  # one encode + one decode per image
_IWAE_SEED = 1234


@dataclass
class ScoreState:
    """What scoring learns from the normal data besides the network: the latent mixture and score statistics."""

    gmm_log_weights: torch.Tensor | None = None  # (C,)
    gmm_means: torch.Tensor | None = None  # (C, d)
    gmm_prec_chol: torch.Tensor | None = None  # (C, d, d), sklearn's precisions_cholesky_
    codes: torch.Tensor | None = None  # (N, d) mu of the normal training data, for knn
    mean: dict[str, float] = field(default_factory=dict)  # per score, on held-out normal data
    std: dict[str, float] = field(default_factory=dict)

    def to(self, device: torch.device) -> "ScoreState":
        """A copy whose tensors live on `device`, for scoring on the model's device."""
        move = lambda t: None if t is None else t.to(device)
        return ScoreState(move(self.gmm_log_weights), move(self.gmm_means), move(self.gmm_prec_chol),
                          move(self.codes), self.mean, self.std)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"gmm_log_weights": self.gmm_log_weights, "gmm_means": self.gmm_means,
               "gmm_prec_chol": self.gmm_prec_chol, "codes": self.codes}
        return {k: v.contiguous() for k, v in out.items() if v is not None}


def fit_latent(mu: torch.Tensor, components: int, seed: int) -> ScoreState:
    """Keep the normal codes (for knn) and fit a Gaussian mixture over them; parameters only, no objects."""
    from sklearn.mixture import GaussianMixture

    x = mu.double().numpy()
    if len(x) > 20000:  # the mixture's fit is quadratic in nothing but linear in N; 20k codes are plenty
        x = x[np.random.default_rng(seed).choice(len(x), 20000, replace=False)]
    k = max(1, min(components, len(x) // 2))
    gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed, max_iter=200).fit(x)
    return ScoreState(
        gmm_log_weights=torch.from_numpy(np.log(gmm.weights_)).float(),
        gmm_means=torch.from_numpy(gmm.means_).float(),
        gmm_prec_chol=torch.from_numpy(gmm.precisions_cholesky_).float(),
        codes=mu.float().contiguous(),
    )


def latent_nll(mu: torch.Tensor, state: ScoreState) -> torch.Tensor:
    """-log sum_c w_c N(mu | m_c, S_c), computed with the precision Cholesky factors as sklearn does."""
    y = torch.einsum("nd,cde->nce", mu, state.gmm_prec_chol) - torch.einsum(
        "cd,cde->ce", state.gmm_means, state.gmm_prec_chol)
    log_det = torch.log(torch.diagonal(state.gmm_prec_chol, dim1=1, dim2=2)).sum(1)
    d = mu.shape[1]
    log_prob = -0.5 * (d * math.log(2 * math.pi) + y.pow(2).sum(2)) + log_det
    return -torch.logsumexp(log_prob + state.gmm_log_weights, dim=1)


def iwae_nll(model, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, k: int) -> torch.Tensor:
    """-log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), with z_k = mu + sigma * eps_k and shared eps."""
    eps = torch.randn(k, mu.shape[1], generator=torch.Generator().manual_seed(_IWAE_SEED)).to(mu.device)
    std = torch.exp(0.5 * logvar)
    log_w = []
    for e in eps:
        z = mu + std * e
        log_px = -reconstruction_nll(model.decode(z), x)
        log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
        log_qz = -0.5 * (e.pow(2) + math.log(2 * math.pi)).sum() - 0.5 * logvar.sum(1)
        log_w.append(log_px + log_pz - log_qz)
    return -(torch.logsumexp(torch.stack(log_w), dim=0) - math.log(k))


def knn_distance(mu: torch.Tensor, codes: torch.Tensor, k: int, chunk: int = 256) -> torch.Tensor:
    """Mean Euclidean distance to the k nearest codes, in chunks so the distance matrix stays small."""
    k = min(k, len(codes))
    return torch.cat([torch.cdist(mu[s:s + chunk], codes).topk(k, dim=1, largest=False).values.mean(1)
                      for s in range(0, len(mu), chunk)])


def blur_error(x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    return (F.avg_pool2d(x - probs, 5, stride=1, padding=2, count_include_pad=False)).pow(2).flatten(1).sum(1)


def combine(scores: dict[str, torch.Tensor], state: ScoreState, parts: list[str]) -> torch.Tensor:
    return sum((scores[c] - state.mean[c]) / state.std[c] for c in parts)


def needed(which, cfg: Config) -> set[str]:
    """The scores to compute: those asked for plus the components 'combined' sums."""
    return set(which) | (set(cfg.combine_parts()) if "combined" in which else set())


@torch.inference_mode()
def score_batch(model, images: torch.Tensor, state: ScoreState, cfg: Config, which=ALL_SCORES,
                precision: str = "float32"):
    """Scores of one batch of uint8 images (N, H, W) as float tensors on the model's device, keyed by score
    name; `state` must be on that device too (ScoreState.to).

    Under "bfloat16" only the network runs in bfloat16; every score is computed in float32.
    """
    need = needed(which, cfg)
    dev = device.of(model)
    x = to_input(images, dev)
    with autocast(precision, dev):
        mu, logvar = model.encode(x)
        mu, logvar = mu.float(), logvar.float()
        logits = model.decode(mu).float()
    out: dict[str, torch.Tensor] = {}
    out["recon"] = reconstruction_nll(logits, x)
    out["elbo"] = out["recon"] + kl_divergence(mu, logvar)
    if "blur" in need:
        out["blur"] = blur_error(x, torch.sigmoid(logits))
    if "latent" in need and state.gmm_means is not None:
        out["latent"] = latent_nll(mu, state)
    if "knn" in need and state.codes is not None:
        out["knn"] = knn_distance(mu, state.codes, cfg.knn_k)
    if "iwae" in need:
        with autocast(precision, dev):
            out["iwae"] = iwae_nll(model, x, mu, logvar, cfg.iwae_samples).float()
    if "combined" in need and state.mean:
        out["combined"] = combine(out, state, cfg.combine_parts())
    return {k: v for k, v in out.items() if k in which}


def score_images(model, images: torch.Tensor, state: ScoreState, cfg: Config, which=ALL_SCORES,
                 batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Scores of many uint8 images, batched so memory stays flat; returns float64 numpy arrays.

    The network runs at Config.precision ('auto': bfloat16 where the CPU has it natively, see runtime.py).
    """
    model.eval()
    precision = resolve_precision(cfg.precision, "score")
    state = state.to(device.of(model))
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        for k, v in score_batch(model, images[start:start + batch_size], state, cfg, which, precision).items():
            parts.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v).double().numpy() for k, v in parts.items()}


def fit_normalisation(state: ScoreState, scores: dict[str, np.ndarray]) -> None:
    """Record mean and std of each score on held-out normal data: the scale 'combined' sums on."""
    for k, v in scores.items():
        state.mean[k] = float(np.mean(v))
        state.std[k] = float(np.std(v)) or 1.0
