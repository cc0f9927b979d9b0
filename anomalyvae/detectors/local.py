"""The local detector: a VAE of small image regions, a memory bank of their normal codes, a novelty per region.

A whole-image VAE trained on a few hundred photos learns their mean (issue 19). Here the seeds' VAE
(model.MLPVAE) learns PATCH x PATCH patches of the normal images, taken at every scale of an image pyramid
(each scale halves the last), so 30 images give tens of thousands of samples. After training, the codes (mu)
of the normal images' patches go into one memory bank per scale (memory.MemoryBank, at most `bank_size`
codes); a test patch's novelty is the distance from its code to the nearest normal code of its scale.

The anomaly map: each pixel takes the mean novelty of the patches that cover it (per scale), each scale's
map is resized to the image and standardised with the mean and standard deviation of the held-out normal
images' maps at that scale, the scales are summed, and a Gaussian of MAP_SIGMA x the image side smooths the
sum. The image score `local` is the map's maximum: smoothing already averages a region, so one bright pixel
cannot decide it. Scales too small for a patch (side x scale < PATCH) are left out.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Config
from ..data.datasets import Split
from ..errors import AnomalyVAEError
from ..vae.model import MLPVAE, as_float, kl_divergence
from ..vae.runtime import batch_for, batches
from .maps import MAP_SIGMA, smooth
from .memory import MemoryBank

PATCH = 8  # patch side in pixels at every scale: 8 px of the image, 16 px of it at scale 1/2, 32 at 1/4
STRIDE = PATCH // 2  # patches overlap by half, at every scale
MAX_TRAIN_PATCHES = 120_000  # training patches, drawn at random from all scales
STEPS = 2000  # optimiser steps of the patch VAE (batch 256): 10 s on 2 cores, measured on 120k patches
LOCAL_BATCH = 256
SCORE_IMAGES = 32  # images scored at once: their patches' codes are searched together
# IVF lists scanned per patch: the search took 85 % of the scoring time at 16 (knn.PROBE); on china-300 (seed 0,
# 120 test images, maps and reconstructions) 16 / 4 / 2 / 1 lists gave image AUROC 0.729 / 0.731 / 0.733 / 0.746,
# pixel AUROC 0.826 / 0.826 / 0.827 / 0.825, in 3.9 / 2.4 / 1.8 / 1.5 s
PROBE = 2
# A collapsed code: the patch VAE's codes say little about their patches, so the banks' distances say little too.
# A working code holds ~3 nats a patch (build_patch_model); under COLLAPSED_KL, or with reconstructions varying
# from patch to patch under COLLAPSED_SPREAD of the variance of the patches themselves, train warns.
COLLAPSED_KL = 1.0
COLLAPSED_SPREAD = 0.05
CODE_CHECK_PATCHES = 4096  # held-out patches the check looks at


def scales_for(cfg: Config, side: int) -> list[float]:
    """The pyramid's scales (1, 1/2, 1/4 ...: cfg.scales of them) at which a patch still fits in the image."""
    return [0.5 ** i for i in range(cfg.scales) if side * 0.5 ** i >= PATCH]


def pyramid_level(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Images (N, C, H, W) as float at `scale` of their side (area averaging, as a camera further away sees them)."""
    x = x.float()
    return x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="area")


def patches(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Float images (N, C, H, W) -> their PATCH x PATCH patches at STRIDE (N * L, C, PATCH, PATCH), and the grid."""
    n, c, h, w = x.shape
    u = F.unfold(x, PATCH, stride=STRIDE)
    grid = ((h - PATCH) // STRIDE + 1, (w - PATCH) // STRIDE + 1)
    return u.transpose(1, 2).reshape(-1, c, PATCH, PATCH), grid


def training_patches(images: torch.Tensor, scales: list[float], most: int, seed: int) -> torch.Tensor:
    """uint8 patches of uint8 images at every scale, at most `most` of them drawn at random."""
    every = torch.cat([patches(pyramid_level(images, s))[0] for s in scales]).round_().clamp_(0, 255).to(torch.uint8)
    if len(every) > most:
        every = every[torch.randperm(len(every), generator=torch.Generator().manual_seed(seed))[:most]]
    return every


def local_epochs(n_patches: int, steps: int = STEPS, batch: int = LOCAL_BATCH) -> int:
    """Passes over the training patches for a budget of optimiser steps: enough for 30 images, no more for 3,000."""
    return max(1, math.ceil(steps * batch / max(1, n_patches)))


def build_patch_model(cfg: Config, channels: int) -> MLPVAE:
    """The seeds' MLP VAE over C x PATCH x PATCH patches, Bernoulli likelihood of grey levels as for images.

    Its codes carry little (KL ~3 nats a patch) yet rank best: measured on china-300 / china-30-mixed (image /
    pixel AUROC), a Gaussian likelihood with a learnt scale per value (KL 22-27 nats) gave 0.733 / 0.815 and
    0.628 / 0.712 against 0.767 / 0.847 and 0.628 / 0.787; beta 0.01 (KL 45) helped china (0.749 against 0.729
    at 16k codes) and hurt flower (0.724 against 0.763); free bits 0.5 and 32 latent dimensions moved china-30
    by -0.004 and +0.016. Kept: the plain VAE."""
    return MLPVAE((channels, PATCH, PATCH), cfg.hidden, cfg.latent_dim)


@torch.inference_mode()
def patch_codes(model: MLPVAE, x: torch.Tensor) -> torch.Tensor:
    """Codes (mu) of float patches in [0, 255]."""
    return model.encode(model.prepare(x / 255.0))[0].float()


@torch.inference_mode()
def fit_banks(model: MLPVAE, images: torch.Tensor, scales: list[float], cfg: Config) -> list[MemoryBank]:
    """One memory bank per scale: the codes of every normal training patch, thinned to cfg.bank_size."""
    model.eval()
    banks = []
    for i, s in enumerate(scales):
        codes = torch.cat([patch_codes(model, patches(pyramid_level(images[sl], s))[0])
                           for sl in batches(len(images), SCORE_IMAGES)])
        banks.append(MemoryBank.build(codes, cfg.bank_size, cfg.bank_subsampling, seed=cfg.seed + i))
    return banks


def _fold(cols: torch.Tensor, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch columns (n, C * PATCH * PATCH, L) put back at their places: the per-pixel sums (n, C, H, W) and how
    many patches cover each pixel (1, 1, H, W)."""
    total = F.fold(cols, shape, PATCH, stride=STRIDE)
    return total, F.fold(torch.ones_like(cols[:1, :PATCH * PATCH]), shape, PATCH, stride=STRIDE)


def spread(values: torch.Tensor, grid: tuple[int, int], n: int, shape: tuple[int, int]) -> torch.Tensor:
    """Per-patch values (n * L,) -> (n, H, W) maps at the level's size: each pixel the mean over its patches."""
    total, count = _fold(values.reshape(n, 1, grid[0] * grid[1]).expand(n, PATCH * PATCH, -1), shape)
    return (total / count.clamp_min(1))[:, 0]


@torch.inference_mode()
def raw_maps(model: MLPVAE, banks: list[MemoryBank], scales: list[float], raw: torch.Tensor) -> list[torch.Tensor]:
    """Per scale, the novelty maps (N, S, S) of uint8 images (N, C, S, S): before standardising and summing."""
    model.eval()
    side = raw.shape[-2:]
    out = []
    for bank, s in zip(banks, scales):
        level = pyramid_level(raw, s)
        p, grid = patches(level)
        d = bank.distance(patch_codes(model, p), k=1, probe=PROBE)
        m = spread(d, grid, len(raw), tuple(level.shape[-2:]))
        if tuple(m.shape[-2:]) != tuple(side):
            m = F.interpolate(m[:, None], size=side, mode="bilinear", align_corners=False)[:, 0]
        out.append(m)
    return out


@torch.inference_mode()
def anomaly_maps(model: MLPVAE, banks: list[MemoryBank], scales: list[float], mean: list[float], std: list[float],
                 raw: torch.Tensor, sigma: float) -> torch.Tensor:
    """Anomaly maps (N, S, S): each scale's novelty standardised on held-out normal images, summed, smoothed."""
    parts = raw_maps(model, banks, scales, raw)
    total = sum((m - mu) / sd for m, mu, sd in zip(parts, mean, std))
    return smooth(total, sigma)


@torch.inference_mode()
def reconstructions(model: MLPVAE, raw: torch.Tensor) -> torch.Tensor:
    """What the patch VAE makes of an image (N, C, S, S) in [0, 1]: its patches at scale 1 reconstructed at
    z = mu and put back where they came from (overlaps averaged); pixels no patch covers stay as they are."""
    model.eval()
    x = raw.float()
    p, grid = patches(x)
    rec = model.mean(model.decode(patch_codes(model, p))).float()
    n, c = len(raw), raw.shape[1]
    total, count = _fold(rec.reshape(n, grid[0] * grid[1], c * PATCH * PATCH).transpose(1, 2), tuple(raw.shape[-2:]))
    return torch.where(count > 0, total / count.clamp_min(1), x / 255.0)


def train(cfg: Config, train: Split, val: Split, **hooks):
    """Train the patch VAE on the normal images' patches (early stopping on the held-out images' patches);
    returns vae.train.FitResult, its config (epochs resolved) and {"n_patches": training patches}."""
    from ..vae.train import fit as fit_network

    scales = scales_for(cfg, min(train.images.shape[-2:]))
    if not scales:
        raise AnomalyVAEError(f"images of {train.images.shape[-1]} px are smaller than the local detector's "
                              f"{PATCH} px patches; use --detector global or a larger --image-size")
    tp = training_patches(train.images, scales, MAX_TRAIN_PATCHES, cfg.seed)
    vp = training_patches(val.images, scales, max(1000, MAX_TRAIN_PATCHES // 10), cfg.seed + 1)
    if cfg.epochs is None:
        cfg = dataclasses.replace(cfg, epochs=local_epochs(len(tp)))
    net_cfg = dataclasses.replace(cfg, batch_size=LOCAL_BATCH)
    torch.manual_seed(cfg.seed)
    model = build_patch_model(cfg, train.images.shape[1])
    labels = lambda t: torch.full((len(t),), -1, dtype=torch.int64)
    result = fit_network(net_cfg, model, Split(tp, labels(tp)), Split(vp, labels(vp)), **hooks)
    return result, cfg, {"n_patches": len(tp)}


def calibrate_maps(model: MLPVAE, banks: list[MemoryBank], scales: list[float],
                   val: torch.Tensor) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each scale's novelty over every pixel of the held-out normal images."""
    sums = np.zeros((len(scales), 3))
    for sl in batches(len(val), SCORE_IMAGES):
        for i, m in enumerate(raw_maps(model, banks, scales, val[sl])):
            m = m.double()
            sums[i] += [m.numel(), m.sum().item(), m.pow(2).sum().item()]
    mean = sums[:, 1] / sums[:, 0]
    std = np.sqrt(np.maximum(sums[:, 2] / sums[:, 0] - mean ** 2, 0))
    return mean.tolist(), [float(s) or 1.0 for s in std]


@dataclasses.dataclass
class LocalState:
    """What the local detector keeps besides the patch VAE: a memory bank of normal patch codes per pyramid
    scale, each scale's novelty mean and standard deviation over the held-out normal images' pixels, and the
    `local` score's mean and spread on them (`mean`, `std`)."""

    banks: list = dataclasses.field(default_factory=list)
    scales: list[float] = dataclasses.field(default_factory=list)
    map_mean: list[float] = dataclasses.field(default_factory=list)
    map_std: list[float] = dataclasses.field(default_factory=list)
    mean: dict[str, float] = dataclasses.field(default_factory=dict)
    std: dict[str, float] = dataclasses.field(default_factory=dict)

    def to(self, device: torch.device, dtype: torch.dtype = torch.float32) -> "LocalState":
        return self  # each bank's search moves its codes to the queries' device (memory.MemoryBank)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for i, bank in enumerate(self.banks):
            out[f"bank{i}"] = bank.codes.contiguous()
            if bank.centroids is not None:
                out[f"bank{i}_centroids"] = bank.centroids.contiguous()
        return out

    def meta(self) -> dict:
        """What the model file's metadata keeps of the local detector (the banks are tensors)."""
        return {"local": {"scales": self.scales, "map_mean": self.map_mean, "map_std": self.map_std}}

    @classmethod
    def from_saved(cls, tensors: dict[str, torch.Tensor], meta: dict) -> "LocalState":
        local = meta.get("local") or {}
        banks = [MemoryBank(tensors[f"score.bank{i}"], tensors.get(f"score.bank{i}_centroids"))
                 for i in range(len(local.get("scales", [])))]
        return cls(banks=banks, scales=list(local.get("scales", [])), map_mean=list(local.get("map_mean", [])),
                   map_std=list(local.get("map_std", [])), mean=dict(meta["score_mean"]),
                   std=dict(meta["score_std"]))

    def has(self, need: str) -> bool:
        return {"bank": bool(self.banks), "normalisation": bool(self.mean)}.get(need, False)


@torch.inference_mode()
def code_use(model: MLPVAE, images: torch.Tensor, scales: list[float], seed: int) -> tuple[float, float]:
    """How much the code keeps of held-out patches: their mean KL in nats a patch, and how much their
    reconstructions (at z = mu) vary from patch to patch as a fraction of how much the patches themselves do."""
    model.eval()
    x = model.prepare(training_patches(images, scales, CODE_CHECK_PATCHES, seed))
    mu, logvar = model.encode(x)
    rec = model.mean(model.decode(mu)).float()
    spread = rec.var(0).mean() / x.float().var(0).mean().clamp_min(1e-12)
    return float(kl_divergence(mu.float(), logvar.float()).mean()), float(spread)


def collapse_warning(cfg: Config, kl: float, spread: float) -> str | None:
    """The line train prints when the patch VAE's code is collapsed, else None."""
    if kl >= COLLAPSED_KL and spread >= COLLAPSED_SPREAD:
        return None
    lower = f"lower --beta (now {cfg.beta:g}), e.g. --beta {min(0.1, cfg.beta / 10):g}"
    return (f"the patch VAE's code is collapsed (KL {kl:.3g} nats a patch, reconstructions vary {spread:.0%} as "
            f"much as the patches): it keeps little of each patch, so the maps rest on the memory bank alone; {lower}")


def calibrating(cfg: Config, train: Split, val: Split, extra: dict) -> str:
    """The line that says what runs after the last optimiser step."""
    n = len(scales_for(cfg, min(train.images.shape[-2:])))
    return (f"calibrating: memory banks of {extra['n_patches']} patch codes at {n} scales, "
            f"threshold on {len(val)} held-out images")


def fit_state(model: MLPVAE, cfg: Config, train: Split, val: Split, extra: dict) -> LocalState:
    """The banks of the normal training images' patch codes, and each scale's novelty statistics on the
    held-out images; extra gets the banks' sizes, how much the code keeps of the held-out patches (KL nats a
    patch, reconstruction spread) and, when that is little, a warning."""
    scales = scales_for(cfg, min(train.images.shape[-2:]))
    banks = fit_banks(model, train.images, scales, cfg)
    mean, std = calibrate_maps(model, banks, scales, val.images)
    extra["bank_codes"] = [len(b.codes) for b in banks]
    kl, spread = code_use(model, val.images, scales, cfg.seed + 1)
    extra["kl_per_patch"], extra["recon_spread"] = round(kl, 4), round(spread, 4)
    if (line := collapse_warning(cfg, kl, spread)) is not None:
        extra["warnings"] = [line]
    return LocalState(banks=banks, scales=scales, map_mean=mean, map_std=std)


def build(cfg: Config, shape: tuple[int, ...], tensors: dict[str, torch.Tensor]) -> MLPVAE:
    """The untrained patch VAE of a saved model, for its weights to be loaded into."""
    return build_patch_model(cfg, shape[0])


def state_from_saved(tensors: dict[str, torch.Tensor], meta: dict) -> LocalState:
    return LocalState.from_saved(tensors, meta)


def maps_of(model: MLPVAE, state: LocalState, raw: torch.Tensor) -> torch.Tensor:
    """The anomaly maps (N, S, S) of raw images."""
    return anomaly_maps(model, state.banks, state.scales, state.map_mean, state.map_std, raw, MAP_SIGMA)


def score_batch(model, raw: torch.Tensor, state: LocalState, cfg: Config, which, precision: str = "float32"):
    """The `local` score of one batch of raw images: each map's maximum (smoothing already averages a region)."""
    top = as_float(maps_of(model, state, raw).flatten(1).amax(1))
    return {name: top for name in which}


def maps_and_recons(model: MLPVAE, state: LocalState, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps (N, S, S) and reconstructions (N, C, S, S) in [0, 1] of prepared images."""
    maps, recs = [], []
    for sl in batches(len(images), batch_for(images)):
        maps.append(maps_of(model, state, images[sl]).numpy())
        recs.append(reconstructions(model, images[sl]).numpy())
    if not maps:
        return np.zeros((0, *images.shape[-2:]), np.float32), np.zeros((0, *images.shape[1:]), np.float32)
    return np.concatenate(maps), np.concatenate(recs)
