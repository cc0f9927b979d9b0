"""The knn score's search: mean distance from each code to its k nearest normal codes.

An exact search over the 48.6k codes of MNIST 0-8 cost 80% of the default score (issue 15). Above
IVF_MIN_CODES codes the search goes through faiss's inverted-file index: k-means cuts the codes into lists of
about 192, each query scans the PROBE lists nearest to it. On MNIST digit 9 that was 16x the exact search and
moved AUROC by +0.0004 (knn) and +0.0001 (combined); smaller sets (one-class models, tables) are searched
exactly, as before. benchmarks/knn_search.py measures both.

Each query's distances depend only on it and on the codes, never on what it is batched with: faiss scans
each list per query, the lists' k-means is seeded, and the coarse search is kept off BLAS (see _direct).
"""

from __future__ import annotations

import numpy as np
import torch

IVF_MIN_CODES = 32 * 192  # below this, an exact search costs little
PER_LIST = 192  # codes per k-means list
PROBE = 16  # lists scanned per query


def exact_knn(mu: torch.Tensor, codes: torch.Tensor, k: int, chunk: int = 256) -> torch.Tensor:
    """Mean Euclidean distance to the k nearest codes, in chunks so the distance matrix stays small."""
    k = min(k, len(codes))
    return torch.cat([distances(mu[s:s + chunk], codes).topk(k, dim=1, largest=False).values.mean(1)
                      for s in range(0, len(mu), chunk)])


def distances(q: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """(N, M) Euclidean distances from direct differences: cdist's matrix-product form (||q||^2 + ||c||^2 -
    2 q.c, taken for more than 25 queries) rounds with the batch's size, so a row's score moved by up to 1e-3
    with what it was scored beside (measured on a wine-table model); direct differences depend on the row alone."""
    return torch.cdist(q, codes, compute_mode="donot_use_mm_for_euclid_dist")


def list_centroids(codes: torch.Tensor) -> torch.Tensor | None:
    """The k-means centroids that cut a large set of codes into lists (None: few codes, searched exactly).

    Fitted once with the model and saved with it: rebuilding the index from them takes 0.04 s where the
    k-means took 0.4 s of every `anomalyvae score one.png`, and the lists no longer depend on faiss's version.
    """
    if len(codes) < IVF_MIN_CODES:
        return None
    import faiss

    x = _numpy(codes)
    kmeans = faiss.Kmeans(x.shape[1], len(x) // PER_LIST, seed=1234)  # IndexIVF.train's own k-means, seeded
    kmeans.train(x)
    return torch.from_numpy(kmeans.centroids.copy())


class KnnIndex:
    """The search over one fixed set of normal codes; built once per model from its saved list centroids
    (list_centroids; computed here where a model has none)."""

    def __init__(self, codes: torch.Tensor, k: int, probe: int = PROBE, centroids: torch.Tensor | None = None):
        self.codes, self.k = codes, min(k, len(codes))
        self.ivf = None
        if len(codes) >= IVF_MIN_CODES:
            import faiss

            _direct(faiss)
            x = _numpy(codes)
            c = _numpy(centroids if centroids is not None else list_centroids(codes))
            quantizer = faiss.IndexFlatL2(x.shape[1])
            quantizer.add(c)
            self.ivf = faiss.IndexIVFFlat(quantizer, x.shape[1], len(c))
            self.ivf.train(x)  # a quantizer already holding its nlist centroids is kept: nothing is fitted here
            self.ivf.add(x)
            self.ivf.nprobe = probe

    def nearest(self, mu: torch.Tensor) -> torch.Tensor:
        """(N, d) codes -> (N, k) indices of their k nearest normal codes (-1 where an IVF search found fewer)."""
        if self.ivf is None:
            codes = self.codes.to(mu.device, mu.dtype)
            return torch.cat([distances(mu[s:s + 256], codes).topk(self.k, dim=1, largest=False).indices
                              for s in range(0, len(mu), 256)])
        import faiss

        faiss.omp_set_num_threads(torch.get_num_threads())
        return torch.from_numpy(self.ivf.search(_numpy(mu), self.k)[1]).to(mu.device)

    def mean_distance(self, mu: torch.Tensor) -> torch.Tensor:
        """(N, d) codes -> (N,) mean distance to the k nearest normal codes, on mu's device and dtype."""
        if self.ivf is None:
            return exact_knn(mu, self.codes.to(mu.device, mu.dtype), self.k)
        import faiss

        faiss.omp_set_num_threads(torch.get_num_threads())
        q = _numpy(mu)
        d2, _ = self.ivf.search(q, self.k)
        return torch.from_numpy(np.sqrt(np.maximum(d2, 0)).mean(1)).to(mu.device, mu.dtype)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().float().cpu().numpy())


def _direct(faiss) -> None:
    """faiss computes distances for batches of 20+ queries as ||q||^2 + ||c||^2 - 2 q.c with BLAS, whose
    rounding may follow the batch's size: a query could then pick a different list in a near tie. Direct
    differences for every batch cost nothing here (256 lists x 16 dimensions)."""
    faiss.cvar.distance_compute_blas_threshold = 2 ** 30
