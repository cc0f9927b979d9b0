"""What the libpng fast path buys end to end: score_paths over a folder of MNIST PNGs with the fast path and with
every file forced through Pillow, alternating in one process (issue 15).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/png_decode.py --model models/<dir>    # or: trains a small model

Prints decode-only and end-to-end files/s for both paths and their ratios (median of per-pair ratios).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalyvae.data import images  # noqa: E402
from anomalyvae.config import make_config  # noqa: E402
from anomalyvae.data.datasets import load_test, load_train  # noqa: E402
from anomalyvae.estimator import AnomalyVAE  # noqa: E402
from anomalyvae.pipeline.files import score_paths  # noqa: E402


def say(*a) -> None:
    print(*a, flush=True)


def write_pngs(folder: Path, n: int, data: str) -> list[Path]:
    from PIL import Image

    test = load_test("mnist", Path(data))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(n, len(test))):
        p = folder / f"{i:05d}.png"
        Image.fromarray(test.images[i].reshape(28, 28).numpy()).save(p)
        paths.append(p)
    return paths


def model(args) -> AnomalyVAE:
    if args.model:
        return AnomalyVAE.load(args.model, device="cpu")
    cfg = make_config(data_dir=args.data, epochs=1, limit=5000, device="cpu", threads=torch.get_num_threads())
    data = load_train(cfg)
    est = AnomalyVAE.from_config(cfg)
    est.fit_splits(cfg, data.train, data.val)
    return est


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/mnist"))
    ap.add_argument("--model", default=None, help="model directory [default: train a small one, 1 epoch]")
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if not hasattr(images, "_libpng"):
        raise SystemExit("anomalyvae.data.images has no _libpng fast path to switch off: nothing to compare")
    det = model(args)
    fast = images._libpng
    say(f"# benchmarks/png_decode.py  torch {torch.__version__}  threads {torch.get_num_threads()}  "
        f"fast path available: {fast() is not None}  "
        f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "png"
        paths = write_pngs(folder, args.files, args.data)
        size = det.config_.image_size

        def run(use_fast: bool, what: str) -> float:
            images._libpng = fast if use_fast else (lambda: None)
            try:
                t0 = time.perf_counter()
                if what == "decode":
                    for p in paths:
                        images.load_image(p, size)
                else:
                    summary = score_paths(det, [folder], Path(tmp) / "s.csv")
                    assert summary.n_scored == len(paths), summary
                return time.perf_counter() - t0
            finally:
                images._libpng = fast

        for what in ("decode", "score_paths"):
            run(True, what), run(False, what)  # warm-up: page cache, oneDNN kernels
            f, p = [], []
            for _ in range(args.reps):
                f.append(run(True, what))
                p.append(run(False, what))
            ratio = statistics.median(b / a for a, b in zip(f, p))
            n = len(paths)
            say(f"  {what:11s}: fast path {n / statistics.median(f):7.0f} files/s, Pillow {n / statistics.median(p):7.0f} "
                f"files/s: the fast path is {ratio:.2f}x (median of {args.reps} alternating pairs)")
    say(f"# load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
