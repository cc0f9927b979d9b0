"""The table detector: one VAE of feature vectors (table rows) and a memory bank of the normal rows.

Fitting reads skewed columns as logs and standardises the features inside the model (`prepare_features`),
trains the VAE for a fixed number of optimiser steps whatever the number of rows (config.feature_schedule),
and keeps the latent mixture and codes (scoring.LatentState) and up to BANK_ROWS standardised normal rows.
Its own score, beside the VAE's (scoring.VAE_SCORES):
- xknn:  mean distance from the standardised input to its k nearest standardised normal training rows, kept
         in a memory.MemoryBank: on the real tables of benchmarks/tabular.py the nearest-neighbour detector
         beat every likelihood score, and it is what the table default sums.

Which features made a row anomalous (`explain`): each feature's share of the default score. Each component of the score splits over the features where its formula does (scores.py names them):
- recon, elbo: the Gaussian likelihood is a sum over features, -log p(x_i | z) = 0.5 (r_i / s_i)^2 + log s_i
  + const, with r_i the residual of the standardised feature and s_i its learnt scale; only the first term
  depends on the row, so feature i's share is 0.5 (r_i / s_i)^2 over the sum of those terms (the KL term of
  elbo belongs to the code, not to a feature).
- xknn: the squared distance to a normal row is a sum over features, so feature i's share is its part of
  ||x - n||^2, averaged over the k nearest normal rows n.
- latent, knn: distances between codes, which no feature owns: they add nothing here.
`combined` weighs its components' shares by how far each component is above normal (its standardised score,
floored at 0; equal weights when none is). Shares are >= 0 and sum to 1 per row: images have anomaly maps
(maps.pixel_map) for this.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..config import Config, feature_schedule
from ..data.datasets import Split
from ..vae import distributed
from ..vae.model import build_model
from ..vae.runtime import batches
from .scoring import VAE_SCORES, LatentState, Pass, encode_mu, fit_latent, vae_pass
from .whole import build, calibrating, classes_of  # the same network, its loading and its calibration line

BANK_ROWS = 10_000  # normal rows kept for xknn: larger tables are thinned by a k-center coreset (memory.py)


@dataclass
class RowsState(LatentState):
    """LatentState and xknn's memory bank of standardised normal training rows."""

    rows: torch.Tensor | None = None  # (M, D) standardised normal training rows
    row_centroids: torch.Tensor | None = None  # their memory bank's IVF lists; None: searched exactly

    def row_bank(self):
        """The memory bank of standardised normal rows that xknn searches (memory.MemoryBank), built once."""
        return self.bank("rows", self.rows, self.row_centroids)

    def has(self, need: str) -> bool:
        return self.rows is not None if need == "rows" else super().has(need)


COMPUTE = {
    **VAE_SCORES,
    # searched in float32 whatever the model's precision: an exact float64 search was about 2x slower (measured)
    "xknn": lambda p: p.state.row_bank().distance(p.x.float(), p.cfg.knn_k).to(p.x.dtype),
}
INPUT_ONLY = frozenset({"xknn", "combined"})  # computed from the prepared input alone (combined: of such parts)


def log_columns(x: torch.Tensor) -> torch.Tensor:
    """(D,) bool: features that are never negative and right-skewed (sample skewness > 1) in the rows x (N, D).

    Their log brings a long tail (breast cancer's areas, an 8x8 digit's faint border pixels) to the scale of
    the rest: with it the 8x8 digits went from 0.976 to 0.985 mean AUROC (python benchmarks/tabular.py --seeds 3,
    before and after)."""
    d = x - x.mean(0)
    m2, m3 = d.pow(2).mean(0), d.pow(3).mean(0)
    skew = torch.where(m2 > 0, m3 / m2.clamp_min(1e-300).pow(1.5), torch.zeros_like(m2))
    return (x.min(0).values >= 0) & (skew > 1)


def prepare_features(model, rows: torch.Tensor) -> None:
    """Fit the model's input transform on the normal rows: which columns are read as logs, then each
    feature's mean and scale (floored at the median spread: estimator.PREPROCESSING says why)."""
    x = rows.double()
    skewed = log_columns(x)
    model.x_log.copy_(skewed.float())
    x = torch.where(skewed, torch.log1p(x.clamp_min(0)), x)
    std = x.std(0, unbiased=False)
    model.x_mean.copy_(x.mean(0).float())
    model.x_std.copy_(std.clamp_min(max(float(std.median()), 1e-6)).float())


def train(cfg: Config, train: Split, val: Split, **hooks):
    """Train the VAE of rows for config.feature_schedule's steps (the rows repeated for small tables)."""
    from ..vae.train import fit as fit_network

    fit_on = train
    if cfg.epochs is None:
        epochs, patience, repeats = feature_schedule(len(train), cfg.batch_size, cfg.patience)
        cfg = dataclasses.replace(cfg, epochs=epochs, patience=patience)
        fit_on = Split(train.images.repeat(repeats, 1), train.labels.repeat(repeats))
    classes = classes_of(cfg, train)
    torch.manual_seed(cfg.seed)  # the initial weights
    model = build_model(cfg, tuple(train.images.shape[1:]), classes)
    prepare_features(model, train.images)
    result = fit_network(distributed.local_config(cfg), model, distributed.shard(fit_on), val, **hooks)
    return result, cfg, {}


@torch.inference_mode()
def fit_state(model, cfg: Config, train: Split, val: Split, extra: dict) -> RowsState:
    """The latent mixture and codes, and the bank of standardised normal rows (a coreset beyond BANK_ROWS)."""
    from .memory import MemoryBank

    state = RowsState(**fit_latent(encode_mu(model, train.images), cfg.latent_components, cfg.seed))
    bank = MemoryBank.build(model.prepare(train.images).float().cpu(), BANK_ROWS, "coreset", cfg.seed)
    state.rows, state.row_centroids = bank.codes, bank.centroids
    return state


def state_from_saved(tensors: dict[str, torch.Tensor], meta: dict) -> RowsState:
    return RowsState.from_saved(tensors, meta)


def score_batch(model, raw: torch.Tensor, state: RowsState, cfg: Config, which, precision: str = "float32"):
    """Scores of one batch of rows as float tensors on the model's device, keyed by score name; the table
    default (xknn) needs no network pass."""
    return vae_pass(model, raw, state, cfg, which, precision, COMPUTE, INPUT_ONLY)


SPLITS = ("recon", "elbo", "xknn")  # the components that split over features (explain)


@torch.inference_mode()
def explain(model, raw: torch.Tensor, state: RowsState, cfg: Config, score: str) -> np.ndarray:
    """(N, D) features -> (N, D) each feature's share of `score`, rows summing to 1."""
    model = copy.deepcopy(model).double().eval()  # float64, as score_inputs scores feature vectors
    state = state.to(next(model.parameters()).device, torch.float64)
    parts = cfg.combine_parts() if score == "combined" else [score]
    out = []
    for sl in batches(len(raw), 4096):
        x = model.prepare(raw[sl])
        p = Pass(model, x, None, None, None, state, cfg, "float32", COMPUTE)
        per = {}
        if {"recon", "elbo"} & set(parts) or len(parts) > 1:  # the network's pass, once, as scoring makes it
            p.mu, p.logvar = model.encode(x)
            p.out = model.decode(p.mu)
        if {"recon", "elbo"} & set(parts):
            rec = model.mean(p.out)
            scale = torch.exp(model.log_scale.clamp(-5.0, 5.0))
            per["recon"] = per["elbo"] = 0.5 * ((x - rec) / scale).pow(2)
        if "xknn" in parts:
            bank = state.row_bank()
            idx = bank.nearest(x.float(), cfg.knn_k)
            near = bank.codes[idx.clamp_min(0)]  # (n, k, D)
            sq = (x[:, None, :] - near).pow(2)
            p.done["xknn"] = sq.sum(2).sqrt().mean(1)  # the score itself, from the neighbours just found
            per["xknn"] = (sq / sq.sum(2, keepdim=True).clamp_min(1e-300)).mean(1)
        used = [p for p in parts if p in per]
        if not used:
            raise ValueError(f"score {score!r} has no per-feature part; explain needs one of {', '.join(SPLITS)}")
        if len(used) == 1:
            weights = torch.ones(len(x), 1, dtype=x.dtype)
        else:
            z = torch.stack([((p.get(c) - state.mean[c]) / state.std[c]).clamp_min(0) for c in used], 1)
            weights = torch.where(z.sum(1, keepdim=True) > 0, z, torch.ones_like(z))
        total = sum(w[:, None] * norm(per[c]) for w, c in zip(weights.T, used))
        out.append(norm(total))
    return torch.cat(out).numpy()


def norm(t: torch.Tensor) -> torch.Tensor:
    """Rows scaled to sum to 1 (a row of zeros: equal shares)."""
    s = t.sum(1, keepdim=True)
    return torch.where(s > 0, t / s.clamp_min(1e-300), torch.full_like(t, 1.0 / t.shape[1]))


def top(frame, n: int = 3) -> list[str]:
    """Each row's n largest shares as 'name (share)', joined by '; ': what the CLI prints per row."""
    values, names = frame.to_numpy(), np.asarray(frame.columns, dtype=str)
    order = np.argsort(-values, axis=1, kind="stable")[:, :n]
    return ["; ".join(f"{names[j]} ({values[i, j]:.2f})" for j in row) for i, row in enumerate(order)]
