"""Real photos and textures: the image detectors and a raw-patch nearest-neighbour baseline, side by side in
one run, on protocols built from real pictures that ship offline (anomalyvae.data.photos).

    python benchmarks/photos.py --seeds 3      # writes benchmarks/results/photos.md and photos.csv
    python benchmarks/photos.py --seeds 3 --protocols brick-300,grass-300,gravel-300 --out benchmarks/results/textures

Protocols: crops of one photo as the normal images, defects planted in test crops (anomalyvae/data/photos.py
says how), 40 normal and 20 defective test images per kind:
- <scene>-300:       300 training crops of 128 px of scikit-learn's china or flower photo; 4 kinds (paste,
                     scratch, smudge, rotated);
- <scene>-30-mixed:  30 training images of mixed sizes (96-200 px a side, aspect 0.6-1.6) and formats;
- <texture>-300:     300 training crops of 128 px of scikit-image's brick, grass or gravel texture (grey); 5
                     kinds (the four, stain: a coffee-coloured blot, and swirl: a twisted region).
Each seed writes its own dataset (photos.generate's seed) and seeds the models with it.

Detectors, each trained on the same split of the same training images (data.load_train):
- local:     `anomalyvae train --dataset mvtec --data-dir ROOT` as it is (the default detector for folders);
- compare:   --detector compare (a restoring VAE and a learned comparison, trained on defects it makes from the
             normal images: blobs of other normal images, plain colour or blur). Kinds it never makes are
             HELD_OUT (a foreign texture pasted in, a thin scratch, a twisted region): the report marks them
             and gives their mean apart, so that no figure measures the defect maker against itself;
- global:    the whole-image conv VAE with configs/mvtec.yaml's settings (--detector global; scenes only);
- raw-patch: no network: 8x8 RGB patches of the training images (stride 4, at the same image size), a random
             50,000 of them kept; a test pixel's value is the mean distance of the patches over it to their
             nearest kept patch, smoothed as the local detector's maps are; image score: the map's maximum.
             In RGB, so it sees a stain's colour on a grey texture.
Figures: image AUROC, pixel AUROC, AUPRO (FPR <= 0.3), image AUROC per defect kind; mean and standard
deviation over seeds; ratios to the raw-patch search; on textures, the goals (image and pixel AUROC >= 0.95,
AUPRO >= 0.85, every kind above the raw-patch search, the mean by >= 0.05) met or not.
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
from anomalyvae.data.layouts import load_test_set, mvtec_test  # noqa: E402

PROTOCOLS = {
    "china-300": dict(normal="china", n_train=300),
    "flower-300": dict(normal="flower", n_train=300),
    "china-30-mixed": dict(normal="china", n_train=30, mixed=True),
    "flower-30-mixed": dict(normal="flower", n_train=30, mixed=True),
    **{f"{t}-300": dict(normal=t, n_train=300) for t in photos.TEXTURES},
}
RAW_BANK = 50_000
METHODS = ("compare", "local", "global", "raw-patch")
HELD_OUT = ("paste", "scratch", "swirl")  # kinds the compare detector's defect maker never makes (compare.make_defects)
GOALS = dict(auroc=0.95, pixel_auroc=0.95, pixel_aupro=0.85, margin=0.05)  # on textures


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
            for m in ("pixel_auroc", "pixel_aupro"):
                if r.get(m) is not None:
                    out[f"{m}_{r['class']}"] = r[m]
    return out


def trained(protocol: str, seed: int, work: Path, root: Path, method: str, config_file=None,
            **config) -> tuple[dict, object]:
    """Train one detector on the protocol's folder and evaluate it: its row and the fitted detector."""
    cfg = make_config(config_file, dataset="mvtec", data_dir=str(root), seed=seed, **config)
    t0 = time.perf_counter()
    det, _ = train_detector(cfg, work / f"{method}-{protocol}-{seed}", log=lambda m: None)
    result = evaluate_detector(det, work / f"ev-{method}-{protocol}-{seed}")
    return row(method, protocol, seed, result, time.perf_counter() - t0), det


def run(protocol: str, seed: int, work: Path, methods: tuple[str, ...]) -> list[dict]:
    root = photos.generate(work / f"{protocol}-{seed}", seed=seed, **PROTOCOLS[protocol])
    rows = []
    local, det = trained(protocol, seed, work, root, "local")
    rows.append(local)
    if "compare" in methods:
        rows.append(trained(protocol, seed, work, root, "compare", detector="compare")[0])
    if "global" in methods and not texture_name(protocol):
        rows.append(trained(protocol, seed, work, root, "global", ROOT / "configs" / "mvtec.yaml",
                            detector="global")[0])
    # the same test images at the same size for the baseline, in RGB (a grey texture's stain keeps its colour)
    rgb = dataclasses.replace(det.config_, channels=3)
    test = load_test_set(mvtec_test(root), det.input_shape_[-1], 3)
    t0 = time.perf_counter()
    data = load_train(rgb)  # the local detector's split, at its image size
    maps = raw_patch(torch.cat([data.train.images, data.val.images]), torch.from_numpy(test.images), seed)
    score = maps.reshape(len(maps), -1).max(1)
    result = {**metrics.ranking(test.anomalous, score),
              "per_class": metrics.per_class(test.labels, score, test.anomalous, test.names)}
    result.update(pixel_results(maps, test, result["per_class"]))
    rows.append(row("raw-patch", protocol, seed, result, time.perf_counter() - t0))
    return rows


def report(df: pd.DataFrame, command: str) -> str:
    lines = ["# Real photos and textures: the image detectors vs raw-patch nearest neighbours\n",
             f"Command: `{command}` ({df.seed.nunique()} seeds; mean ± standard deviation over seeds). "
             "Protocols and detectors: the docstring of benchmarks/photos.py. Kinds marked * are never made by "
             "the compare detector's training (held out). Seconds are wall-clock time for training and "
             "evaluating, on 2 cores.\n"]
    mean = lambda part, c: part[c].mean() if c in part and part[c].notna().all() else float("nan")
    for protocol, part in df.groupby("protocol", sort=False):
        kinds = [c[6:] for c in part.columns if c.startswith("auroc_") and part[c].notna().any()]
        held = [k for k in kinds if k in HELD_OUT]
        lines.append(f"\n## {protocol}\n")
        head = ["detector", "image AUROC", "pixel AUROC", "AUPRO",
                *[f"{k}{'*' if k in HELD_OUT else ''}" for k in kinds], "held-out mean", "s", "compare / it (image)"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        ref = mean(part[part.method == "compare"], "auroc")
        for method in METHODS:
            m = part[part.method == method]
            if m.empty:
                continue
            cell = lambda c: f"{m[c].mean():.3f} ± {m[c].std(ddof=0):.3f}" if c in m and m[c].notna().all() else "-"
            lines.append("| " + " | ".join([method, cell("auroc"), cell("pixel_auroc"), cell("pixel_aupro"),
                                            *[f"{mean(m, f'auroc_{k}'):.3f}" for k in kinds],
                                            f"{np.mean([mean(m, f'auroc_{k}') for k in held]):.3f}",
                                            f"{m.train_seconds.mean():.0f}",
                                            f"{ref / m.auroc.mean():.3f}x"]) + " |")
        c, r = part[part.method == "compare"], part[part.method == "raw-patch"]
        if texture_name(protocol) and not c.empty and not r.empty:
            checks = [(f"image AUROC {mean(c, 'auroc'):.3f} >= {GOALS['auroc']}", mean(c, "auroc") >= GOALS["auroc"]),
                      (f"pixel AUROC {mean(c, 'pixel_auroc'):.3f} >= {GOALS['pixel_auroc']}",
                       mean(c, "pixel_auroc") >= GOALS["pixel_auroc"]),
                      (f"AUPRO {mean(c, 'pixel_aupro'):.3f} >= {GOALS['pixel_aupro']}",
                       mean(c, "pixel_aupro") >= GOALS["pixel_aupro"]),
                      *[(f"{k} {mean(c, f'auroc_{k}'):.3f} > raw-patch {mean(r, f'auroc_{k}'):.3f}",
                         mean(c, f"auroc_{k}") > mean(r, f"auroc_{k}")) for k in kinds],
                      (f"image AUROC {mean(c, 'auroc'):.3f} >= raw-patch {mean(r, 'auroc'):.3f} + {GOALS['margin']}",
                       mean(c, "auroc") >= mean(r, "auroc") + GOALS["margin"])]
            lines.append("\nGoals (compare): " + "; ".join(f"{t} {'met' if ok else 'MISSED'}" for t, ok in checks)
                         + ".")
    means = df.groupby("method").auroc.mean()
    lines.append("\nMean image AUROC over every protocol and seed each ran: "
                 + ", ".join(f"{m} {means[m]:.3f}" for m in METHODS if m in means) + ".")
    return "\n".join(lines) + "\n"


def texture_name(protocol: str) -> bool:
    return protocol.split("-")[0] in photos.TEXTURES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated, from: " + ", ".join(PROTOCOLS))
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from: " + ", ".join(METHODS)
                   + " (local and raw-patch always run)")
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
                new = run(protocol, seed, Path(tmp), tuple(a.methods.split(",")))
                rows += new
                r = new
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
