"""The compare detector: a VAE that restores images and a network that compares an image with its restoration,
both trained on defects made from the normal images themselves (the DRAEM recipe, Zavrtanik et al. 2021, with
the seeds' VAE as its reconstructive part and no outside data).

Why: on textures a VAE's reconstruction error alone ranks defects poorly (the error of a fine texture is large
everywhere), and a patch code of a few nats keeps less than the raw pixels. A learned comparison of input and
restoration knows which differences are the texture's own and which are not.

- The restorer (`Restorer`) is a convolutional VAE with a spatial code (encoder -> mu, logvar at 1/8 of the
  side, reparameterised z, decoder), trained to turn a corrupted normal image back into the clean one: its
  loss is the reconstruction error of the clean image (Gaussian, fixed scale) plus the KL to N(0, I).
- The comparer (`Comparer`), a small U-Net, reads the image and its restoration (six channels) and gives a
  defect logit per pixel; it learns the masks of the made defects (focal loss).
- The made defects (`make_defects`): blobs from thresholded smooth noise (Perlin-like, at several scales)
  filled with a part of another normal image of the batch (rotated, flipped, brightened or darkened), a plain
  colour, or the image blurred, blended with a random opacity. Half of each batch stays clean. Thin lines,
  foreign textures and distortions of the surface's geometry are never made: a benchmark reports those kinds
  apart, as defects the training never saw.
- Colour: the detector always works in RGB, so colour on a grey surface (a stain) stays visible; grey files
  are repeated to three channels, and the loader says so once.

The anomaly map is the comparer's defect probability smoothed as every map is (maps.MAP_SIGMA); the image
score `compare` is the map's maximum. (A 9 px box average before the maximum, as DRAEM pools, lost 0.04-0.05
image AUROC on brick and gravel, 150 crops, one seed: benchmarks/probes/texture_probe.py.)
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..data.datasets import Split
from ..errors import AnomalyVAEError
from ..vae.model import as_float
from ..vae.runtime import batch_for, batches, set_threads
from .maps import MAP_SIGMA, box_blur, smooth

MIN_SIDE = 32  # the restorer's code is at 1/8 of the side
CLEAN_SHARE = 0.5  # images of a training batch left without a made defect
SIGMA = 0.1  # the restorer's Gaussian likelihood scale (pixels in [0, 1])
BETA = 1.0  # the KL's weight in the restorer's loss
STEPS = 2400  # optimiser steps (batch BATCH) when cfg.epochs is unset
BATCH = 8
CROP = 96  # training crops' side: the networks are convolutional, so they score any size


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class Restorer(nn.Module):
    """A convolutional VAE with a code of `latent` channels at 1/8 of the side."""

    def __init__(self, width: int = 16, latent: int = 8):
        super().__init__()
        w = width
        # no layer at full resolution but the last: they cost the most and a code at 1/8 needs none
        self.encoder = nn.Sequential(_conv(3, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w))
        self.to_stats = nn.Conv2d(4 * w, 2 * latent, 1)
        up = lambda cin, cout: nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv(cin, cout))
        self.decoder = nn.Sequential(nn.Conv2d(latent, 4 * w, 1), _conv(4 * w, 4 * w), up(4 * w, 2 * w),
                                     up(2 * w, w), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, 3, 3, 1, 1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.encoder(x * 2 - 1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor, sample: bool = True):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return self.decode(z), mu, logvar


class Comparer(nn.Module):
    """A small U-Net from an image and its restoration (N, 6, H, W) to a defect logit per pixel (N, 1, H, W)."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.d0 = _conv(6, w)  # one layer at full resolution: thin lines need it, and it costs the most
        self.d1 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w))
        self.d2 = nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w))
        self.d3 = nn.Sequential(_conv(4 * w, 4 * w, 2), _conv(4 * w, 4 * w))
        self.u2 = _conv(8 * w, 4 * w)
        self.u1 = _conv(6 * w, 2 * w)
        self.u0 = nn.Sequential(nn.Conv2d(3 * w, w, 1), nn.SiLU())
        self.out = nn.Conv2d(w, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        up = lambda t, like: F.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=False)
        a = self.d0(torch.cat([x, rec], 1) * 2 - 1)
        b = self.d1(a)
        c = self.d2(b)
        d = self.d3(c)
        c = self.u2(torch.cat([up(d, c), c], 1))
        b = self.u1(torch.cat([up(c, b), b], 1))
        a = self.u0(torch.cat([up(b, a), a], 1))
        return self.out(a)


class CompareNet(nn.Module):
    """The restorer and the comparer, saved and loaded together."""

    def __init__(self, width: int = 16, latent: int = 8):
        super().__init__()
        self.restorer = Restorer(width, latent)
        self.comparer = Comparer(width)

    @staticmethod
    def prepare(raw: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 255]) RGB images -> float in [0, 1]."""
        return raw.float() / 255.0

    @torch.inference_mode()
    def sample_prior(self, n: int, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        """n images (n, 3, H, W) in [0, 1] decoded from codes drawn from N(0, I): what the restorer thinks
        a normal surface is."""
        r = self.restorer
        h, w = (-(-s // 8) for s in shape[-2:])
        z = torch.randn(n, r.to_stats.out_channels // 2, h, w, generator=gen)
        return r.decode(z.to(next(r.parameters()).device))[..., :shape[-2], :shape[-1]]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Defect logits (N, H, W) and restorations (N, 3, H, W) of prepared images, the code at its mean."""
        rec = self.restorer(x, sample=False)[0]
        return self.comparer(x, rec)[:, 0], rec


def noise_masks(n: int, side: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """(n, H, W) bool blobs: smooth random noise (a random grid of 4 to 32 cells a side, bicubic up-sampled, as
    Perlin noise is smooth) above a random threshold; every mask holds at least a few pixels."""
    h, w = side
    out = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        for _ in range(8):
            cells = int(2 ** torch.randint(2, 6, (1,), generator=gen).item())
            g = torch.randn(1, 1, cells, cells, generator=gen)
            m = F.interpolate(g, size=(h, w), mode="bicubic", align_corners=False)[0, 0]
            m = m / m.std().clamp_min(1e-6)
            t = 0.8 + 0.9 * torch.rand(1, generator=gen).item()
            out[i] = m > t
            if out[i].sum() >= 16:
                break
    return out


def make_defects(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupted copies of prepared normal images (N, 3, H, W) and their defect masks (N, H, W) in {0, 1}.

    Each defective image gets one blob (noise_masks) filled, a third each, with another image of the batch
    (turned by a multiple of 90 degrees, maybe flipped, its brightness scaled by 0.6-1.4), a plain random
    colour, or the image itself blurred; the fill is blended in at an opacity of 0.3 to 1. CLEAN_SHARE of the
    images stay as they are (mask 0)."""
    n, _, h, w = x.shape
    masks = noise_masks(n, (h, w), gen).float()
    keep = torch.rand(n, generator=gen) < CLEAN_SHARE
    masks[keep] = 0
    other = x.roll(1, 0)
    k = int(torch.randint(0, 4, (1,), generator=gen).item())
    if h == w:
        other = torch.rot90(other, k, (2, 3))
    if torch.rand(1, generator=gen).item() < 0.5:
        other = other.flip(3)
    other = (other * (0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen))).clamp(0, 1)
    colour = torch.rand(n, 3, 1, 1, generator=gen).expand(-1, -1, h, w)
    size = 2 * int(torch.randint(2, 6, (1,), generator=gen).item()) + 1
    soft = box_blur(box_blur(x, size), size)  # the image itself, blurred: a worn or out-of-focus region
    kind = torch.randint(0, 3, (n, 1, 1, 1), generator=gen)
    fill = torch.where(kind == 0, colour, torch.where(kind == 1, other, soft))
    opacity = 0.3 + 0.7 * torch.rand(n, 1, 1, 1, generator=gen)
    m = masks[:, None] * opacity
    return x * (1 - m) + fill * m, masks


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss (Lin et al. 2017) of per-pixel logits: the rare defect pixels are not drowned out."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    return ((1 - pt) ** gamma * ce).mean()


def losses(net: CompareNet, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch's training loss (the restorer's negative ELBO of the clean images per pixel plus the
    comparer's focal loss on the made masks) and its reconstruction and KL terms per image, for the history."""
    bad, mask = make_defects(x, gen)
    rec, mu, logvar = net.restorer(bad)
    recon = (rec - x).pow(2).sum((1, 2, 3)) / (2 * SIGMA ** 2)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum((1, 2, 3))
    pixels = x[0].numel()
    vae = (recon + BETA * kl).mean() / pixels
    logits = net.comparer(bad, rec.detach())[:, 0]
    seg = focal_loss(logits, mask)
    return vae + 10 * seg, {"recon": recon.mean().item(), "kl": kl.mean().item()}


def _crops(images: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
    """A random (side x side) crop of each image (the whole image where it is smaller)."""
    h, w = images.shape[-2:]
    if h <= side and w <= side:
        return images
    y = torch.randint(0, h - min(side, h) + 1, (len(images),), generator=gen)
    x = torch.randint(0, w - min(side, w) + 1, (len(images),), generator=gen)
    return torch.stack([im[:, a:a + min(side, h), b:b + min(side, w)] for im, a, b in zip(images, y, x)])


def train(cfg: Config, train: Split, val: Split, on_step=None, on_epoch=None, resume: bool = False, **hooks):
    """Train the restorer and the comparer together on made defects for STEPS steps (cfg.epochs: passes over
    the training images instead); the held-out normal images' loss, with the same made defects every epoch,
    picks the best epoch."""
    from ..vae.train import EpochStats, FitResult

    if resume:
        raise AnomalyVAEError("--resume is not available for the compare detector; train again without it")
    side = min(train.images.shape[-2:])
    if side < MIN_SIDE:
        raise AnomalyVAEError(f"images of {side} px are smaller than the compare detector's {MIN_SIDE} px; "
                              "use --detector local or a larger --image-size")
    if train.images.shape[1] != 3:
        raise AnomalyVAEError("the compare detector works in RGB; train it with --channels 3")
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = CompareNet(cfg.width)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(train.images)
    per_epoch = max(1, math.ceil(n / BATCH))
    epochs = cfg.epochs or max(1, math.ceil(STEPS / per_epoch))
    cfg = dataclasses.replace(cfg, epochs=epochs)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    total, warm = epochs * per_epoch, max(1, epochs * per_epoch // 20)
    # a short warm-up, then a cosine decay to zero: the made defects are new every step, so the last steps
    # at a small rate settle the comparer instead of chasing the last batches
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min((k + 1) / warm, 0.5 * (1 + math.cos(math.pi * k / total))))
    history, best, best_val, best_epoch, stopped_by, diverged, t_all = [], copy.deepcopy(net), math.inf, 0, None, None, 0.0
    val_x = CompareNet.prepare(val.images)
    val_gen = torch.Generator().manual_seed(4321)
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            net.train()
            order = torch.randperm(n, generator=gen)
            sums = np.zeros(2)
            for i in range(per_epoch):
                x = CompareNet.prepare(_crops(train.images[order[i * BATCH:(i + 1) * BATCH]], CROP, gen))
                loss, parts = losses(net, x, gen)
                loss_f = loss.item()
                if not math.isfinite(loss_f):
                    diverged = f"loss became {loss_f} at epoch {epoch}, step {i + 1}"
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                sums += [parts["recon"], parts["kl"]]
                if on_step is not None:
                    on_step(epoch, i + 1, per_epoch, loss_f)
            if diverged:
                break
            v = validation_loss(net, val_x, val_gen)
            t_all += time.perf_counter() - t0
            rec_m, kl_m = sums[0] / per_epoch, sums[1] / per_epoch
            stats = EpochStats(epoch, rec_m + kl_m, rec_m, kl_m, v, v, 0.0, time.perf_counter() - t0)
            history.append(stats)
            if v < best_val:
                best, best_val, best_epoch = copy.deepcopy(net), v, epoch
            if on_epoch is not None:
                on_epoch(stats)
    except KeyboardInterrupt as e:
        stopped_by = str(e) or "Ctrl-C"
    return FitResult(best.eval(), history, best_epoch, stopped_by, diverged, t_all), cfg, {}


@torch.no_grad()
def validation_loss(net: CompareNet, x: torch.Tensor, gen: torch.Generator) -> float:
    """The held-out images' training loss with the same made defects every epoch (gen reseeded)."""
    net.eval()
    state = gen.get_state()
    total = 0.0
    for sl in batches(len(x), 32):
        total += losses(net, x[sl], gen)[0].item() * len(x[sl])
    gen.set_state(state)
    return total / max(1, len(x))


@torch.inference_mode()
def maps_of(net: CompareNet, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Anomaly maps (N, H, W): defect probabilities, smoothed; and the restorations (N, 3, H, W) in [0, 1]."""
    net.eval()
    logits, rec = net(CompareNet.prepare(raw))
    return smooth(torch.sigmoid(logits), MAP_SIGMA), rec


@dataclasses.dataclass
class CompareState:
    """What the compare detector keeps besides its networks: the `compare` score's mean and spread on the
    held-out normal images (`mean`, `std`)."""

    mean: dict[str, float] = dataclasses.field(default_factory=dict)
    std: dict[str, float] = dataclasses.field(default_factory=dict)

    def to(self, device: torch.device, dtype: torch.dtype = torch.float32) -> "CompareState":
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def meta(self) -> dict:
        return {}

    @classmethod
    def from_saved(cls, tensors: dict[str, torch.Tensor], meta: dict) -> "CompareState":
        return cls(mean=dict(meta["score_mean"]), std=dict(meta["score_std"]))

    def has(self, need: str) -> bool:
        return need == "normalisation" and bool(self.mean)


def calibrating(cfg: Config, train: Split, val: Split, extra: dict) -> str:
    return f"calibrating: threshold on {len(val)} held-out images"


def fit_state(model: CompareNet, cfg: Config, train: Split, val: Split, extra: dict) -> CompareState:
    return CompareState()


def build(cfg: Config, shape: tuple[int, ...], tensors: dict[str, torch.Tensor]) -> CompareNet:
    """The untrained networks of a saved model, for its weights to be loaded into."""
    return CompareNet(cfg.width)


def state_from_saved(tensors: dict[str, torch.Tensor], meta: dict) -> CompareState:
    return CompareState.from_saved(tensors, meta)


def score_batch(model: CompareNet, raw: torch.Tensor, state: CompareState, cfg: Config, which,
                precision: str = "float32"):
    """The `compare` score of one batch of raw images: each anomaly map's maximum."""
    top = as_float(maps_of(model, raw)[0].flatten(1).amax(1))
    return {name: top for name in which}


def maps_and_recons(model: CompareNet, state: CompareState, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps (N, S, S) and restorations (N, 3, S, S) in [0, 1] of prepared images."""
    maps, recs = [], []
    for sl in batches(len(images), batch_for(images)):
        m, r = maps_of(model, images[sl])
        maps.append(m.numpy())
        recs.append(r.numpy())
    if not maps:
        return np.zeros((0, *images.shape[-2:]), np.float32), np.zeros((0, *images.shape[1:]), np.float32)
    return np.concatenate(maps), np.concatenate(recs)
