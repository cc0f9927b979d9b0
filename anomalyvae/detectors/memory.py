"""The memory bank: codes of normal data kept for a nearest-neighbour search, thinned to a bounded size.

One idea runs through anomalyvae's detectors: a learned code per input (the `knn` score of a digit or of a
table row) or per image region (the local detector, local.py), a bank of the codes of the normal data, and
the distance to the nearest of them as the novelty. This module thins a bank (`subsample`) and searches it
(`MemoryBank.distance`, through knn.KnnIndex: exact for small banks, faiss IVF lists for large ones).

Thinning, as PatchCore does it (Roth et al. 2022, sec. 3.2): the greedy k-center coreset picks, one at a
time, the code farthest from all picked so far, so that every normal code has a picked one near it and rare
normal regions survive, where a random subset keeps mostly the common ones. Distances for the choice are
taken in a random projection of the codes (Johnson-Lindenstrauss), which keeps their order and costs less.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SUBSAMPLING = ("coreset", "random")
PROJECTION = 64  # dimensions the coreset's distances are computed in
PRESELECT = 40_000  # a random subset this large is thinned by the coreset (its cost is size x PRESELECT)


def subsample(codes: torch.Tensor, size: int, method: str = "coreset", seed: int = 0) -> torch.Tensor:
    """Indices of at most `size` rows of codes (N, d) to keep: a greedy k-center coreset or a random subset."""
    if method not in SUBSAMPLING:
        raise ValueError(f"unknown subsampling {method!r}; choose from {', '.join(SUBSAMPLING)}")
    n = len(codes)
    g = torch.Generator().manual_seed(seed)
    if n <= size:
        return torch.arange(n)
    order = torch.randperm(n, generator=g)
    if method == "random":
        return order[:size].sort().values
    pool = order[:max(size, PRESELECT)]
    x = codes[pool].float()
    if x.shape[1] > PROJECTION:
        x = x @ (torch.randn(x.shape[1], PROJECTION, generator=g) / PROJECTION ** 0.5)
    return pool[greedy_coreset(x, size)].sort().values


def greedy_coreset(x: torch.Tensor, size: int) -> torch.Tensor:
    """k-center greedy: start anywhere (the first row), then repeatedly take the row farthest from those taken."""
    sq = x.pow(2).sum(1)
    nearest = torch.full((len(x),), float("inf"))
    picked = torch.empty(size, dtype=torch.long)
    i = 0
    for j in range(size):
        picked[j] = i
        d2 = sq + sq[i] - 2 * (x @ x[i])
        nearest = torch.minimum(nearest, d2)
        i = int(nearest.argmax())
    return picked


@dataclass
class MemoryBank:
    """Normal codes (M, d) and their search; `centroids` are the IVF lists' k-means centres (knn.list_centroids),
    fitted once and saved with the bank so that loading does not refit them."""

    codes: torch.Tensor
    centroids: torch.Tensor | None = None
    indexes: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, codes: torch.Tensor, size: int, method: str = "coreset", seed: int = 0) -> "MemoryBank":
        from .knn import list_centroids

        kept = codes[subsample(codes, size, method, seed)].float().contiguous()
        return cls(kept, list_centroids(kept))

    def distance(self, q: torch.Tensor, k: int = 1, probe: int | None = None) -> torch.Tensor:
        """(N, d) queries -> (N,) mean Euclidean distance to their k nearest codes in the bank; `probe`: lists
        scanned per query where the bank is searched through IVF lists (knn.PROBE when None)."""
        return self._index(q, k, probe).mean_distance(q)

    def nearest(self, q: torch.Tensor, k: int = 1) -> torch.Tensor:
        """(N, d) queries -> (N, k) rows of `codes` nearest to each (-1: none found, large banks only)."""
        return self._index(q, k).nearest(q)

    def _index(self, q: torch.Tensor, k: int, probe: int | None = None):
        from .knn import PROBE, KnnIndex

        key = (k, q.device, q.dtype, probe)
        if key not in self.indexes:
            self.indexes[key] = KnnIndex(self.codes.to(q.device, q.dtype), k, probe=probe or PROBE,
                                         centroids=self.centroids)
        return self.indexes[key]
