"""`AnomalyVAE().fit(X)` on MNIST's 54k normal training arrays beside `anomalyvae train` on the same data, one run,
alternating, same seed and thread count:

    python benchmarks/fit_vs_cli.py --data-dir ../shared/datasets/mnist --reps 2

The CLI is timed as a user sees it (a fresh process: start-up, reading the IDX files, training, calibrating,
writing the model directory; --no-tracking); fit(X) from the arrays already in memory, as a Python user holds
them. Both train on 90% of the digits 0-8 and hold out 10%. Prints each time and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalyvae import AnomalyVAE  # noqa: E402
from anomalyvae.data.datasets import load_idx_split  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/datasets/mnist"))
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    full = load_idx_split("mnist", args.data_dir, "train")
    X = full.images[torch.isin(full.labels, torch.arange(9))][:, 0].numpy()  # (N, 28, 28) uint8, as a user has it
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    fit_s, cli_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for who in (("fit", "cli") if rep % 2 == 0 else ("cli", "fit")):
                t0 = time.perf_counter()
                if who == "fit":
                    est = AnomalyVAE(random_state=0, threads=args.threads).fit(X)
                    fit_s.append(time.perf_counter() - t0)
                    print(f"rep {rep + 1} AnomalyVAE().fit(X): {fit_s[-1]:.1f}s ({est.info_['n_train']} images, "
                          f"{est.info_['epochs_run']} epochs, load {os.getloadavg()[0]:.2f})", flush=True)
                else:
                    r = subprocess.run([sys.executable, "-m", "anomalyvae", "train", "--normal", "0-8", "--seed", "0",
                                        "--data-dir", str(args.data_dir), "--no-tracking", "--out", f"{tmp}/m{rep}"],
                                       env=env, capture_output=True, text=True)
                    if r.returncode:
                        raise SystemExit(r.stderr)
                    cli_s.append(time.perf_counter() - t0)
                    print(f"rep {rep + 1} anomalyvae train  : {cli_s[-1]:.1f}s (load {os.getloadavg()[0]:.2f})", flush=True)
    f, c = statistics.median(fit_s), statistics.median(cli_s)
    print(f"median: fit(X) {f:.1f}s, anomalyvae train {c:.1f}s: fit / train = {f / c:.3f} (goal: within 10%)")


if __name__ == "__main__":
    main()
