"""The series detector: a Donut-style VAE of sliding windows (Xu et al. 2018) and a score per timestamp.

- Windows: every run of W = Config.window consecutive points (stride 1) of the (T, D) series, flattened into one
  vector of W x D for an MLP VAE (vae.model.MLPVAE's layers, a Gaussian likelihood with a learnt scale for each
  point of the window and channel).
- Scaling: each channel by its median and interquartile range on the training part (IQR / 1.349, the spread
  of a Gaussian), the spread floored at a tenth of the channel's standard deviation (a channel that is mostly
  one value with rare bursts).
- Missing points (NaN cells, and timestamps absent from the grid: data/series.py puts them there as NaN) are
  masked, never imputed: the encoder reads 0 (the channel's median) there, and the reconstruction term of the
  ELBO sums over the observed points only (Donut's M-ELBO, sec. 3.2). At scoring a missing point has no
  reconstruction error, so its `recon` is NaN (never flagged; metrics leave it out).
- Scores per timestamp t (higher = more anomalous):
  - recon: -log p(x_t | z = mu) of the point, summed over its observed channels, averaged over every window that
    holds t (the W windows around it, fewer at the ends). With `causal` (Config.causal, for NAB's streaming
    protocol) t is scored from the one window that ends at it alone, so only past data counts: that window's
    -log p(x | z = mu) per observed point, summed over channels (the window's last point alone scored 0.665
    mean AUROC on NAB's realKnownCause series, the whole window 0.760: benchmarks/series.py --only
    realKnownCause, before and after). The first W - 1 points get a window padded in front with missing
    points, masked as above.
  - knn: mean distance from the window's code mu to its k nearest codes of the training windows; per point,
    averaged over the windows that hold it (causal: the window ending at it).
  - combined: recon and knn, each standardised on the held-out normal part.
- Calibration: the last val_fraction of the series (in time order, never shuffled across the split) is held
  out; its points' scores (from windows that may reach back into the training part: past data) set the
  threshold, as held-out normal images do.
Scores are computed in chunks of windows (memory flat in the series' length), accumulated in float64.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, feature_schedule
from ..data.datasets import Split
from ..errors import InvalidInput
from ..vae.model import MLPVAE
from .scoring import LatentState, check_computable

CHUNK = 4096  # windows scored at once: memory stays flat in the series' length
IQR_SIGMA = 1.349  # the interquartile range of a standard normal


class WindowVAE(MLPVAE):
    """MLPVAE over a flattened (W, D) window, Gaussian likelihood, masked where a point is missing (NaN)."""

    def __init__(self, window: int, channels: int, hidden: int, latent_dim: int):
        super().__init__((window, channels), hidden, latent_dim, input_kind="series")
        self.log_scale = nn.Parameter(torch.zeros(window, channels))
        self.register_buffer("center", torch.zeros(channels))  # each channel's median on the training part
        self.register_buffer("spread", torch.ones(channels))  # and its IQR / 1.349

    def prepare(self, raw: torch.Tensor) -> torch.Tensor:
        p = next(self.parameters())
        return (raw.to(p.device, p.dtype) - self.center) / self.spread

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc1(torch.nan_to_num(x, nan=0.0).flatten(1)))  # a missing point reads as the median

    def nll_terms(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x_i | z) per point and channel; 0 where x_i is missing (M-ELBO: it is no evidence)."""
        log_scale = self.log_scale.clamp(-5.0, 5.0)
        # nan_to_num before the difference: a NaN there would give NaN gradients through torch.where
        terms = 0.5 * ((torch.nan_to_num(x) - out) * torch.exp(-log_scale)).pow(2) + log_scale + 0.5 * math.log(
            2 * math.pi)
        return torch.where(torch.isnan(x), torch.zeros_like(terms), terms)


@dataclass
class SeriesState(LatentState):
    """LatentState's codes (`knn`) of the training windows and the score statistics; no mixture."""


def windows(x: torch.Tensor, w: int, causal: bool = False) -> torch.Tensor:
    """(T, D) -> (n, W, D) views of every window, stride 1: n = T - W + 1, or T with `causal` (window t ends at
    point t; the first W - 1 are padded in front with missing points)."""
    if causal:
        x = torch.cat([torch.full((w - 1, x.shape[1]), float("nan"), dtype=x.dtype), x])
    return x.unfold(0, w, 1).transpose(1, 2)


def check_length(cfg: Config, n: int, what: str = "the series") -> None:
    if n < cfg.window:
        raise InvalidInput(f"{what} has {n} points, fewer than one window of {cfg.window}; pass a smaller "
                           "window (--window, AnomalyVAE(window=...))")


def split(cfg: Config, data: torch.Tensor) -> tuple[Split, Split]:
    """The first 1 - val_fraction of the series to train on, the rest held out (with the W - 1 points before
    it as context, so its first points have windows too): time order, no shuffling across the split."""
    t = len(data)
    n_val = max(1, int(round(t * cfg.val_fraction)))
    if t - n_val < cfg.window:
        raise InvalidInput(f"the series has {t} points; with {n_val} held out ({cfg.val_fraction:g}) fewer than one "
                           f"window of {cfg.window} are left to train on; pass a smaller window or a longer series")
    none = lambda n: torch.full((n,), -1, dtype=torch.int64)
    val = data[t - n_val - (cfg.window - 1):]
    return Split(data[:t - n_val], none(t - n_val)), Split(val, none(len(val)))


def fit_scaling(model: WindowVAE, train: torch.Tensor) -> None:
    """Each channel's median and IQR / 1.349 (the standard deviation where the IQR is 0) on the training part."""
    x = train.double().numpy()
    center = np.nanmedian(x, 0)
    q1, q3 = np.nanpercentile(x, [25, 75], axis=0)
    # floored at a tenth of the standard deviation: a channel that is one value with rare bursts (NAB's
    # ec2_cpu_utilization_77c1ca: IQR 0.004, bursts of 100) put its bursts 30,000 IQRs out, and the loss overflowed
    spread = np.maximum((q3 - q1) / IQR_SIGMA, np.nanstd(x, 0) / 10)
    model.center.copy_(torch.from_numpy(center))
    model.spread.copy_(torch.from_numpy(np.where(spread > 0, spread, 1.0)))


def _train_windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """Every window of x that holds at least one observed point, materialised (the training loop indexes rows)."""
    win = windows(x, w)
    return win[~torch.isnan(win).all(2).all(1)].contiguous()


def train(cfg: Config, train: Split, val: Split, **hooks):
    """Train the window VAE on the training part's windows (the held-out part's for early stopping) for
    config.feature_schedule's steps, the windows repeated for short series."""
    from ..vae.train import fit as fit_network

    train_w, val_w = _train_windows(train.images, cfg.window), _train_windows(val.images, cfg.window)
    if cfg.epochs is None:
        epochs, patience, repeats = feature_schedule(len(train_w), cfg.batch_size, cfg.patience)
        cfg = dataclasses.replace(cfg, epochs=epochs, patience=patience)
        train_w = train_w.repeat(repeats, 1, 1)
    torch.manual_seed(cfg.seed)  # the initial weights
    model = WindowVAE(cfg.window, train.images.shape[1], cfg.hidden, cfg.latent_dim)
    fit_scaling(model, train.images)
    none = lambda n: torch.full((n,), -1, dtype=torch.int64)
    result = fit_network(cfg, model, Split(train_w, none(len(train_w))), Split(val_w, none(len(val_w))), **hooks)
    return result, cfg, {}


@torch.inference_mode()
def fit_state(model, cfg: Config, train: Split, val: Split, extra: dict) -> SeriesState:
    """The codes mu of every training window, for knn (its search: knn.py)."""
    from .knn import list_centroids

    model.eval()
    mu = torch.cat([model.encode(model.prepare(w))[0].float() for w in _chunks(windows(train.images, cfg.window))])
    return SeriesState(codes=mu.contiguous(), knn_centroids=list_centroids(mu))


def calibrating(cfg: Config, train: Split, val: Split, extra: dict) -> str:
    return (f"calibrating: codes of {len(train) - cfg.window + 1} training windows, threshold on the last "
            f"{len(val) - cfg.window + 1} points (held out)")


def build(cfg: Config, shape: tuple[int, ...], tensors: dict[str, torch.Tensor]):
    return WindowVAE(cfg.window, int(shape[0]), cfg.hidden, cfg.latent_dim)


def state_from_saved(tensors: dict[str, torch.Tensor], meta: dict) -> SeriesState:
    return SeriesState.from_saved(tensors, meta)


def _chunks(win: torch.Tensor):
    for s in range(0, len(win), CHUNK):
        yield win[s:s + CHUNK]


def _per_point(values: torch.Tensor, t: int, w: int, causal: bool, start: int, acc: torch.Tensor,
               count: torch.Tensor) -> None:
    """Add a chunk of per-window values (n, W, D) (or (n, D) for one value a window) to the points they belong
    to: causal, the window's last point (window k ends at point k); else every point of the window."""
    n = len(values)
    if causal:
        v = values[:, -1] if values.dim() == 3 else values
        acc[start:start + n] += v
        count[start:start + n] += 1
        return
    for j in range(w):
        v = values[:, j] if values.dim() == 3 else values
        acc[start + j:start + j + n] += v
        count[start + j:start + j + n] += 1


@torch.inference_mode()
def point_scores(model, raw: torch.Tensor, state: SeriesState, cfg: Config, which) -> dict[str, torch.Tensor]:
    """The series' scores per timestamp as float64 tensors, and "channels": recon per point and channel (T, D).

    """
    parts = set(which) | (set(cfg.combine_parts()) if "combined" in which else set())
    if not cfg.causal:
        check_length(cfg, len(raw))
    model.eval()
    x = raw.detach().to(torch.float64).cpu()
    t, d, w = x.shape[0], x.shape[1], cfg.window
    rec, rec_n = torch.zeros(t, d, dtype=torch.float64), torch.zeros(t, d, dtype=torch.float64)
    knn, knn_n = torch.zeros(t, dtype=torch.float64), torch.zeros(t, dtype=torch.float64)
    for start, win in zip(range(0, t, CHUNK), _chunks(windows(x, w, cfg.causal))):
        xs = model.prepare(win)  # in the model's dtype (float32: each window's row of a product is its own)
        mu, _ = model.encode(xs)
        if "recon" in parts:
            terms = model.nll_terms(model.decode(mu), xs).cpu()
            if cfg.causal:  # the window ending at the point: its mean per observed point, per channel
                terms = terms.sum(1) / (~torch.isnan(xs)).sum(1).clamp_min(1).cpu()
            _per_point(terms.double(), t, w, cfg.causal, start, rec, rec_n)
        if "knn" in parts:
            dist = state.knn_index(cfg.knn_k).mean_distance(mu.float().to(state.codes.device)).double().cpu()
            _per_point(dist, t, w, cfg.causal, start, knn, knn_n)
    out: dict[str, torch.Tensor] = {}
    observed = ~torch.isnan(x)
    if "recon" in parts:
        per = torch.where(observed, rec / rec_n.clamp_min(1), torch.zeros_like(rec))
        out["channels"] = torch.where(observed, per, torch.full_like(per, float("nan")))
        out["recon"] = torch.where(observed.any(1), per.sum(1), torch.full((t,), float("nan"), dtype=torch.float64))
    if "knn" in parts:
        out["knn"] = knn / knn_n.clamp_min(1)
    if "combined" in which:
        st = state
        out["combined"] = sum((out[c] - st.mean[c]) / st.std[c] for c in cfg.combine_parts())
    return out


def score_batch(model, raw: torch.Tensor, state: SeriesState, cfg: Config, which, precision: str = "float32"):
    """Scores of one series (T, D) per timestamp, keyed by score name: a window needs its neighbours, so the
    "batch" of this detector is a whole series."""
    scores = point_scores(model, raw, state, cfg, which)
    return {k: scores[k] for k in which}


def score_inputs(model, raw: torch.Tensor, state: SeriesState, cfg: Config, which,
                 batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Scores of a series per timestamp as float64 numpy arrays (what AnomalyVAE.anomaly_scores computes)."""
    check_computable(which, state, cfg)
    state = state.to(torch.device("cpu"), torch.float32)
    return {k: v.numpy() for k, v in score_batch(model, raw, state, cfg, which).items()}


def held_out_scores(est, val: Split, which) -> dict[str, np.ndarray]:
    """The held-out points' scores (their context of W - 1 points left out), missing points dropped."""
    scores = est.anomaly_scores(val.images, which, _prepared=True)
    w = est.config_.window
    return {k: v[w - 1:][np.isfinite(v[w - 1:])] for k, v in scores.items()}
