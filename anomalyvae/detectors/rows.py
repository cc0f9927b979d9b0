"""Which features made a row anomalous: each feature's share of the default score, for feature vectors.

Each component of the score splits over the features where its formula does (scores.py names them):
- recon, elbo: the Gaussian likelihood is a sum over features, -log p(x_i | z) = 0.5 (r_i / s_i)^2 + log s_i
  + const, with r_i the residual of the standardised feature and s_i its learnt scale; only the first term
  depends on the row, so feature i's share is 0.5 (r_i / s_i)^2 over the sum of those terms (the KL term of
  elbo belongs to the code, not to a feature).
- xknn: the squared distance to a normal row is a sum over features, so feature i's share is its part of
  ||x - n||^2, averaged over the k nearest normal rows n.
- latent, knn: distances between codes, which no feature owns: they add nothing here.
`combined` weighs its components' shares by how far each component is above normal (its standardised score,
floored at 0; equal weights when none is). Shares are >= 0 and sum to 1 per row: images have anomaly maps
(scoring.pixel_map) for this.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..config import Config
from .scoring import Pass, ScoreState, batches

SPLITS = ("recon", "elbo", "xknn")  # the components that split over features


@torch.inference_mode()
def shares(model, raw: torch.Tensor, state: ScoreState, cfg: Config, score: str) -> np.ndarray:
    """(N, D) features -> (N, D) each feature's share of `score`, rows summing to 1."""
    model = copy.deepcopy(model).double().eval()  # float64, as score_inputs scores feature vectors
    state = state.to(next(model.parameters()).device, torch.float64)
    parts = cfg.combine_parts() if score == "combined" else [score]
    out = []
    for sl in batches(len(raw), 4096):
        x = model.prepare(raw[sl])
        p = Pass(model, x, None, None, None, state, cfg, "float32")
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
