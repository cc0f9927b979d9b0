"""What MLflow tracking costs `train` before its first batch: paired fresh processes, tracked and --no-tracking.

    python benchmarks/tracking_overhead.py                 # 5 pairs, default config, MNIST digits 0-8
    python benchmarks/tracking_overhead.py --pairs 9 --data ../shared/datasets/mnist

Each pair runs the same training twice in new processes, once logging to a sqlite store and once with
tracking off, in alternating order (so a busy neighbour costs both sides alike), and stops each at its first
batch. Everything before that batch counts: imports, data loading, the MLflow run with its params, datasets and
description. The store is created once before the pairs (MLflow's schema migrations, timed apart). Prints the
medians, the median paired difference (goal: at most 2 s) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIRST_BATCH = textwrap.dedent("""
    import os, sys
    from anomalyvae.config import make_config
    from anomalyvae.pipeline.images import train_detector
    from anomalyvae.tracking.runs import Tracker
    def first(*a):
        print('first-batch', flush=True)
        os._exit(0)
    uri = None if sys.argv[2] == '-' else sys.argv[2]
    cfg = make_config(data_dir=sys.argv[1], tracking_uri=uri)
    train_detector(cfg, out=sys.argv[3], tracker=Tracker(cfg.experiment, uri, enabled=uri is not None),
                   on_step=first)
""")


def first_batch_seconds(data: Path, uri: str | None, out: Path, cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds from process start to the first training batch; CPU time does not grow with the load
    other processes put on the machine, wall time does."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", FIRST_BATCH, str(data), uri or "-", str(out)], capture_output=True,
                       text=True, env=env, cwd=cwd)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if "first-batch" not in r.stdout or "tracking failed" in r.stderr:
        raise SystemExit(f"child failed (tracking {uri}):\n{r.stderr[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("ANOMALYVAE_DATA_DIR",
                                                                     ROOT.parent / "shared/datasets/mnist")))
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="anomalyvae-tracking-overhead-") as tmp:
        tmp = Path(tmp)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        fresh, _ = first_batch_seconds(args.data, uri, tmp / "m-fresh", tmp)
        print(f"first run on a new store (creates mlflow.db): {fresh:.2f}s")
        tracked, untracked = [], []
        for i in range(args.pairs):
            order = [(uri, tracked), (None, untracked)]
            for u, into in order if i % 2 == 0 else order[::-1]:
                into.append(first_batch_seconds(args.data, u, tmp / f"m{i}-{u is None}", tmp))
            (tw, tc), (uw, uc) = tracked[-1], untracked[-1]
            print(f"pair {i + 1}: tracked {tw:.2f}s (CPU {tc:.2f}s), --no-tracking {uw:.2f}s (CPU {uc:.2f}s), "
                  f"difference {tw - uw:+.2f}s", flush=True)
    load = os.getloadavg()[0]
    diff = statistics.median(t[0] - u[0] for t, u in zip(tracked, untracked))
    cpu = statistics.median(t[1] - u[1] for t, u in zip(tracked, untracked))
    t, u = statistics.median(x[0] for x in tracked), statistics.median(x[0] for x in untracked)
    print(f"process start to first batch, median of {args.pairs}: tracked {t:.2f}s, --no-tracking {u:.2f}s; "
          f"median paired difference {diff:+.2f}s (goal <= 2 s: {'met' if diff <= 2 else 'MISSED'}), "
          f"{cpu:+.2f} CPU-seconds; ratio {t / u:.2f}x; load average at the end {load:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
