"""Speed of AnomalyVAE on a table (issue 20's goals): fit on 10,000 x 50 <= 30 s; scoring >= 100,000 rows/s;
explain <= 2x the time of scoring the same rows. Also, as the reference measured in the same run, PyOD's KNN
(fit and decision_function) on the same rows when PyOD is installed.

    python benchmarks/table_speed.py [--threads N]      # appends to nothing: prints; results/table-speed.txt

The table: 50 correlated Gaussian features (a random 10-factor model plus noise), 10,000 normal rows to fit,
100,000 rows to score (the same distribution). Each timing is the best of --repeats runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def table(n: int, d: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    loadings = np.random.default_rng(1234).normal(size=(10, d))
    return (rng.normal(size=(n, 10)) @ loadings + rng.normal(scale=0.5, size=(n, d))).astype(np.float32)


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    from anomalyvae import AnomalyVAE

    torch.set_num_threads(args.threads)
    X, Q = table(10_000), table(100_000, seed=1)
    t0 = time.perf_counter()
    det = AnomalyVAE(random_state=0, threads=args.threads).fit(X)
    fit_s = time.perf_counter() - t0
    det.score_samples(Q[:1000])  # the search index is built on first use
    score_s = best(lambda: det.score_samples(Q), args.repeats)
    explain_s = best(lambda: det.explain(Q), args.repeats)
    lines = [f"python benchmarks/table_speed.py --threads {args.threads}  (torch threads {args.threads}; "
             f"{os.cpu_count()} CPUs on this machine)",
             f"fit 10,000 x 50: {fit_s:.1f} s ({det.info_['epochs_run']} epochs, best {det.info_['best_epoch']}; "
             f"goal <= 30 s: {'met' if fit_s <= 30 else 'missed'})",
             f"score 100,000 rows ('{det.score_}'): {score_s:.2f} s = {100_000 / score_s:,.0f} rows/s "
             f"(goal >= 100,000: {'met' if 100_000 / score_s >= 1e5 else 'missed'})",
             f"explain 100,000 rows: {explain_s:.2f} s = {explain_s / score_s:.2f}x scoring "
             f"(goal <= 2x: {'met' if explain_s <= 2 * score_s else 'missed'})"]
    try:
        from pyod.models.knn import KNN
    except ImportError:
        lines.append("PyOD not installed: no reference (pip install -e '.[bench]')")
    else:
        t0 = time.perf_counter()
        knn = KNN(n_jobs=args.threads).fit(X)
        knn_fit = time.perf_counter() - t0
        knn_score = best(lambda: knn.decision_function(Q), 1)
        lines.append(f"reference, PyOD KNN (same rows, n_jobs {args.threads}): fit {knn_fit:.1f} s, score "
                     f"{100_000 / knn_score:,.0f} rows/s; AnomalyVAE / KNN: fit {fit_s / knn_fit:.1f}x the time, "
                     f"scoring {knn_score / score_s:.2f}x the speed")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
