"""Real photos (issue 19): the default (local) detector, the whole-image VAE and a raw-patch nearest-neighbour
baseline, side by side in one run, on protocols built from scikit-learn's two sample photos (anomalyvae.data.photos).

    python benchmarks/photos.py --seeds 3      # writes benchmarks/results/photos.md and photos.csv

Protocols: crops of one photo as the normal images, defects planted in test crops (paste, scratch, smudge,
rotated; anomalyvae/data/photos.py says how), 40 normal and 4 x 20 defective test images:
- <photo>-300:       300 training crops of 128 px;
- <photo>-30-mixed:  30 training images of mixed sizes (96-200 px a side, aspect 0.6-1.6) and formats.
Each seed writes its own dataset (photos.generate's seed) and seeds the models with it.

Detectors, each trained on the same split of the same training images (data.load_train):
- local:     `anomalyvae train --dataset mvtec --data-dir ROOT` as it is (the default detector for folders);
- global:    the whole-image conv VAE with configs/mvtec.yaml's settings (--detector global);
- raw-patch: no network: 8x8 RGB patches of the training images (stride 4, at the same image size), a random
             50,000 of them kept; a test pixel's value is the mean distance of the patches over it to their
             nearest kept patch, smoothed as the local detector's maps are; image score: the map's maximum.
Figures: image AUROC, pixel AUROC, AUPRO (FPR <= 0.3), image AUROC per defect kind; mean and standard
deviation over seeds; the local detector's ratio to each.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyvae.evaluation import metrics
from anomalyvae.data import photos  # noqa: E402
from anomalyvae.config import make_config  # noqa: E402
from anomalyvae.data.datasets import load_train  # noqa: E402
from anomalyvae.detectors.local import patches, spread  # noqa: E402
from anomalyvae.detectors.memory import MemoryBank  # noqa: E402
from anomalyvae.pipeline.images import evaluate_detector, pixel_results, train_detector  # noqa: E402
from anomalyvae.detectors.maps import MAP_SIGMA, smooth  # noqa: E402
from anomalyvae.data.testsets import build  # noqa: E402

PROTOCOLS = {
    "china-300": dict(normal="china", n_train=300),
    "flower-300": dict(normal="flower", n_train=300),
    "china-30-mixed": dict(normal="china", n_train=30, mixed=True),
    "flower-30-mixed": dict(normal="flower", n_train=30, mixed=True),
}
RAW_BANK = 50_000
METHODS = ("local", "global", "raw-patch")


def raw_patch(train: torch.Tensor, test: torch.Tensor, seed: int) -> np.ndarray:
    """The baseline's anomaly maps (N, S, S) of uint8 test images, from uint8 training images."""
    flat = lambda p: p.flatten(1) / 255.0
    bank = MemoryBank.build(flat(patches(train.float())[0]), RAW_BANK, "random", seed)
    maps = []
    for start in range(0, len(test), 32):
        x = test[start:start + 32].float()
        p, grid = patches(x)
        maps.append(smooth(spread(bank.distance(flat(p)), grid, len(x), tuple(x.shape[-2:])), MAP_SIGMA))
    return torch.cat(maps).numpy()


def row(method: str, protocol: str, seed: int, result: dict, seconds: float) -> dict:
    out = {"protocol": protocol, "seed": seed, "method": method, "auroc": result["auroc"],
           "pixel_auroc": result.get("pixel_auroc"), "pixel_aupro": result.get("pixel_aupro"),
           "train_seconds": seconds}
    for r in result["per_class"]:
        if r["anomaly"]:
            out[f"auroc_{r['class']}"] = r["auroc"]
    return out


def run(protocol: str, seed: int, work: Path) -> list[dict]:
    root = photos.generate(work / f"{protocol}-{seed}", seed=seed, **PROTOCOLS[protocol])
    rows = []
    cfg = make_config(dataset="mvtec", data_dir=str(root), seed=seed)
    t0 = time.perf_counter()
    det, out = train_detector(cfg, work / f"local-{protocol}-{seed}", log=lambda m: None)
    rows.append(row("local", protocol, seed, evaluate_detector(det, work / f"ev-local-{protocol}-{seed}"),
                    time.perf_counter() - t0))
    test = build(det)  # the same test images at the same size for the baseline
    gcfg = make_config(ROOT / "configs" / "mvtec.yaml", dataset="mvtec", data_dir=str(root), seed=seed,
                       detector="global")
    t0 = time.perf_counter()
    gdet, _ = train_detector(gcfg, work / f"global-{protocol}-{seed}", log=lambda m: None)
    rows.append(row("global", protocol, seed, evaluate_detector(gdet, work / f"ev-global-{protocol}-{seed}"),
                    time.perf_counter() - t0))
    t0 = time.perf_counter()
    data = load_train(dataclasses.replace(det.config_))  # the local detector's split, at its image size
    maps = raw_patch(torch.cat([data.train.images, data.val.images]), torch.from_numpy(test.images), seed)
    score = maps.reshape(len(maps), -1).max(1)
    result = {**metrics.ranking(test.anomalous, score),
              "per_class": metrics.per_class(test.labels, score, test.anomalous, test.names)}
    result.update(pixel_results(maps, test, result["per_class"]))
    rows.append(row("raw-patch", protocol, seed, result, time.perf_counter() - t0))
    return rows


def report(df: pd.DataFrame, command: str) -> str:
    lines = [f"# Real photos: local detector vs whole-image VAE vs raw-patch nearest neighbours\n",
             f"Command: `{command}` ({df.seed.nunique()} seeds; mean ± standard deviation over seeds). "
             "Protocols and detectors: the docstring of benchmarks/photos.py. Seconds are wall-clock time "
             "for training and evaluating, on 2 cores shared with other jobs.\n"]
    defects = [c for c in df.columns if c.startswith("auroc_")]
    for protocol, part in df.groupby("protocol", sort=False):
        lines.append(f"\n## {protocol}\n")
        head = ["detector", "image AUROC", "pixel AUROC", "AUPRO", *[f"{c[6:]} (image)" for c in defects],
                "train + evaluate s", "local / it (image)"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        local = part[part.method == "local"].auroc.mean()
        for method in METHODS:
            m = part[part.method == method]
            cell = lambda c: f"{m[c].mean():.3f} ± {m[c].std(ddof=0):.3f}" if m[c].notna().all() else "-"
            lines.append("| " + " | ".join([method, cell("auroc"), cell("pixel_auroc"), cell("pixel_aupro"),
                                            *[f"{m[c].mean():.3f}" for c in defects],
                                            f"{m.train_seconds.mean():.0f}",
                                            f"{local / m.auroc.mean():.3f}x"]) + " |")
    means = df.groupby("method").auroc.mean()
    lines.append("\nMean image AUROC over every protocol and seed: "
                 + ", ".join(f"{m} {means[m]:.3f}" for m in METHODS) + ".")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated, from: " + ", ".join(PROTOCOLS))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "photos")
    p.add_argument("--report-only", action="store_true", help="rewrite OUT.md from OUT.csv (no new runs)")
    a = p.parse_args()
    if a.report_only:
        text = a.out.with_suffix(".md").read_text()
        command = next(line for line in text.splitlines() if line.startswith("Command: `"))[10:].split("`")[0]
        a.out.with_suffix(".md").write_text(report(pd.read_csv(a.out.with_suffix(".csv")), command))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for protocol in a.protocols.split(","):
            for seed in range(a.seeds):
                rows += run(protocol, seed, Path(tmp))
                r = rows[-3:]
                print(f"{protocol} seed {seed}: " + "  ".join(f"{x['method']} {x['auroc']:.3f}/"
                                                              f"{x['pixel_auroc']:.3f}" for x in r), flush=True)
    df = pd.DataFrame(rows)
    command = "python benchmarks/photos.py " + " ".join(sys.argv[1:])
    text = report(df, command.strip())
    print(text)
    # written once, whole, at the end: an interrupted run leaves the committed results as they were
    df.to_csv(a.out.with_suffix(".csv"), index=False)
    a.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
