"""Scoring speed of 128 px PNGs end to end, the compare and the local detector side by side in one run.

    OMP_NUM_THREADS=2 python benchmarks/texture_speed.py --files 1000     # writes benchmarks/results/texture-speed.txt

Both detectors are trained (defaults) on the same texture folder (anomalyvae.data.photos, gravel, 300 crops);
then each scores the same folder of FILES PNGs (the test crops, hard-linked over again) in a fresh process
(speed.score_folder: anomalyvae.pipeline.files.score_paths -> CSV; model load not counted), REPS times; the
median rate, peak RSS, and the rate with ten times the files (memory stays flat: the folder is streamed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from anomalyvae.config import make_config  # noqa: E402
from anomalyvae.data import photos  # noqa: E402
from anomalyvae.pipeline.images import train_detector  # noqa: E402
from speed import score_folder  # noqa: E402


def folder(src: Path, dst: Path, n: int) -> Path:
    files = sorted(p for p in src.rglob("*.png"))
    dst.mkdir(parents=True)
    for i in range(n):
        os.link(files[i % len(files)], dst / f"{i:05d}.png")
    return dst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "texture-speed.txt")
    a = p.parse_args()
    lines = [f"# {__doc__.splitlines()[0]}", f"command: python benchmarks/texture_speed.py {' '.join(sys.argv[1:])}".strip(),
             f"threads: {os.environ.get('OMP_NUM_THREADS', 'default')}, cores: {os.cpu_count()}"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = photos.generate(tmp / "gravel", normal="gravel", n_train=300, seed=0)
        small = folder(root / "test", tmp / "png", a.files)
        big = tmp / "big"
        for c in range(10):
            folder(root / "test", big / str(c), a.files)
        rates = {}
        for method in ("compare", "local"):
            det, _ = train_detector(make_config(dataset="mvtec", data_dir=str(root), detector=method, seed=0),
                                    tmp / f"m-{method}", log=lambda m: None)
            runs = sorted((score_folder(tmp / f"m-{method}", [small], tmp / "s.csv") for _ in range(a.reps)),
                          key=lambda r: r["score_s"])
            mid = runs[len(runs) // 2]
            large = score_folder(tmp / f"m-{method}", [big], tmp / "b.csv")
            rates[method] = mid["n"] / mid["score_s"]
            lines.append(f"{method}: {mid['n']} files in {mid['score_s']:.2f}s -> {rates[method]:.0f} images/s "
                         f"(median of {a.reps}), peak RSS {mid['peak_rss_mb']} MB; {large['n']} files "
                         f"{large['n'] / large['score_s']:.0f} images/s, peak RSS {large['peak_rss_mb']} MB")
            print(lines[-1], flush=True)
    lines.append(f"compare / local: {rates['compare'] / rates['local']:.2f}x the images per second")
    text = "\n".join(lines) + "\n"
    print(text)
    a.out.write_text(text)


if __name__ == "__main__":
    main()
