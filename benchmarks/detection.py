"""Detection quality on the standard protocols, through the same library code the CLI runs.

    python benchmarks/detection.py --dataset mnist --protocol loo --seeds 3
    python benchmarks/detection.py --dataset fashion-mnist --protocol oneclass --classes 0,3 --seeds 1

Protocols: `loo` (leave-one-class-out: one class is the anomaly, the other nine are normal) and
`oneclass` (one class is normal, the other nine are anomalies). Each (class, seed) trains anomalyvae with
its defaults (plus any --set key=value), evaluates every score on the official test split, and logs one
MLflow run per model (experiment anomalyvae-benchmarks, flat params and metrics: open it in `mlflow ui`,
tick runs, Compare). With --reference, the seeds' VAE (MLP 784-400-20,
BCE + KL, 10 epochs, scored by reconstruction error) is trained in the same run on the same split, and the
table shows the ratio. With --baseline, the simplest strong baseline runs beside it on the same split: each
test image's mean cosine distance to its 5 nearest normal training images, in raw pixels (no model; exact
search). Writes benchmarks/results/<dataset>-<protocol>.csv and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalyvae.config import make_config  # noqa: E402
from anomalyvae.pipeline.images import evaluate_detector, train_detector  # noqa: E402
from anomalyvae.tracking.runs import Tracker  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# Published anchors (mean test AUROC over classes, one-class protocol).
ANCHORS = {("mnist", "oneclass"): ("Deep SVDD (Ruff et al. 2018)", 0.948),
           ("fashion-mnist", "oneclass"): ("GEOM (Golan & El-Yaniv 2018)", 0.935)}
GOALS = {("mnist", "loo"): "mean >= 0.95, every class >= 0.85", ("mnist", "oneclass"): "mean >= 0.98",
         ("fashion-mnist", "oneclass"): "mean >= 0.94", ("fashion-mnist", "loo"): "as high as possible"}
# The seeds' model: pytorch/examples' VAE, scored by reconstruction error.
SEEDS_VAE = dict(arch="mlp", hidden=400, latent_dim=20, epochs=10, batch_size=128, patience=10, score="recon")


PROTOCOLS = {"loo": "the class is the anomaly, the other nine are normal",
             "oneclass": "the class is normal, the other nine are anomalies"}


def normal_spec(protocol: str, c: int) -> str:
    return ",".join(str(k) for k in range(10) if k != c) if protocol == "loo" else str(c)


def run_one(dataset: str, protocol: str, c: int, seed: int, data_dir: str | None, overrides: dict, label: str,
            workdir: Path, tracking: bool) -> list[dict]:
    cfg = make_config(dataset=dataset, data_dir=data_dir, normal=normal_spec(protocol, c), seed=seed,
                      experiment="anomalyvae-benchmarks", **overrides)
    swept = "".join(f" {k}={v}" for k, v in overrides.items() if k not in ("tracking_uri", "experiment"))
    run = Tracker(cfg.experiment, cfg.tracking_uri, enabled=tracking, warn=print)
    run.start(run_name=f"{label}{swept} {dataset} {protocol} class {c} seed {seed}", tags={"anomalyvae.job": "benchmark"})
    try:
        t0 = time.perf_counter()
        det, out = train_detector(cfg, out=workdir / f"{label}-{protocol}-{c}-{seed}", log=lambda m: None)
        wall = time.perf_counter() - t0
        res = evaluate_detector(det, out / "evaluation", data_dir=data_dir, model_dir=out)
    except BaseException as e:
        run.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    log_run(run, det, res, protocol, c, label, wall)
    return [{"dataset": dataset, "protocol": protocol, "class": c, "seed": seed, "model": label, "score": name,
             "default": name == cfg.score, "auroc": r["auroc"], "auprc": r["auprc"],
             "train_seconds": round(det.info_["train_seconds"], 2), "wall_seconds": round(wall, 2)}
            for name, r in res["scores"].items()]


def pixel_knn(dataset: str, protocol: str, c: int, data_dir: str | None, k: int = 5) -> list[dict]:
    """AUROC of raw-pixel cosine kNN (k nearest normal training images) on the test split: the baseline."""
    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score

    from anomalyvae.data.classes import parse_classes
    from anomalyvae.data.datasets import load_idx_split

    cfg = make_config(dataset=dataset, data_dir=data_dir, normal=normal_spec(protocol, c))
    train, test = (load_idx_split(dataset, cfg.resolved_data_dir(), s) for s in ("train", "test"))
    normal = torch.tensor(parse_classes(cfg.normal))
    bank = torch.nn.functional.normalize(train.images[torch.isin(train.labels, normal)].flatten(1).float(), dim=1)
    t0 = time.perf_counter()
    dist = []
    for s in range(0, len(test), 1000):
        q = torch.nn.functional.normalize(test.images[s:s + 1000].flatten(1).float(), dim=1)
        sim = (q @ bank.T).topk(k, dim=1).values  # cosine similarity; distance = 1 - similarity
        dist.append((1 - sim).mean(1))
    score = torch.cat(dist).numpy()
    y = (~torch.isin(test.labels, normal)).numpy()
    return [{"dataset": dataset, "protocol": protocol, "class": c, "seed": 0, "model": "pixel-knn", "score": "pixel-knn",
             "default": True, "auroc": roc_auc_score(y, score), "auprc": average_precision_score(y, score),
             "train_seconds": 0.0, "wall_seconds": round(time.perf_counter() - t0, 2)}]


def log_run(run: Tracker, det, res: dict, protocol: str, c: int, label: str, wall: float) -> None:
    """One MLflow run per model, flat params (the whole config + protocol, class, model) and flat metrics
    (AUROC/AUPRC of the default score and of every score, times, per-epoch losses), so MLflow's compare view
    lines runs of a sweep up by seed, latent_dim, score, ... against auroc (the experiment's primary metric).
    The run was started before training, so its duration is the model's."""
    cfg = det.config_
    run.describe(f"`benchmarks/detection.py`, protocol `{protocol}` ({PROTOCOLS[protocol]}), class {c}, model "
                 f"{label}: trained on {det.info_['n_train']:,} normal images, evaluated on the {cfg.dataset} test "
                 f"split ({res['n_test']:,} images, {res['n_anomalies']:,} anomalous).")
    run.log_params({**cfg.to_dict(), "protocol": protocol, "class": c, "model": label})
    run.log_metrics({"auroc": res["auroc"], "auprc": res["auprc"], "f1": res["f1"], "fpr": res["fpr"],
                     **{f"auroc_{k}": r["auroc"] for k, r in res["scores"].items()},
                     **{f"auprc_{k}": r["auprc"] for k, r in res["scores"].items()},
                     "train_seconds": det.info_["train_seconds"], "wall_seconds": wall,
                     "best_epoch": det.info_["best_epoch"], "val_fpr": det.info_["val_fpr"]})
    for h in det.history_:
        run.log_metrics({k: v for k, v in h.items() if k != "epoch"}, step=h["epoch"])
    run.rename(f"{run.run_name}: AUROC {res['auroc']:.3f}")
    run.end()


def table(df: pd.DataFrame, dataset: str, protocol: str) -> str:
    ours = df[(df.model == "anomalyvae") & df.default]
    score = ours.score.iloc[0]
    by = ours.groupby("class").auroc
    mean, std = by.mean(), by.std(ddof=0)
    classes = list(mean.index)
    head = "| | " + " | ".join(map(str, classes)) + " | mean |"
    lines = [head, "|" + "---|" * (len(classes) + 2)]
    seeds = sorted(ours.seed.unique())
    lines.append(f"| anomalyvae ({score}, {len(seeds)} seed{'s' * (len(seeds) > 1)}) | "
                 + " | ".join(f"{mean[c]:.3f} ± {std[c]:.3f}" if len(seeds) > 1 else f"{mean[c]:.3f}" for c in classes)
                 + f" | **{ours.groupby('seed').auroc.mean().mean():.3f}** |")
    for label, ratio, ref in (("seeds' VAE (recon, same run)", "ratio", df[(df.model == "seeds-vae") & (df.score == "recon")]),
                              ("pixel kNN (cosine, k=5, same run)", "ratio to pixel kNN", df[df.model == "pixel-knn"])):
        if len(ref):  # a reference trained or run beside anomalyvae, and the ratio per class
            rmean = ref.groupby("class").auroc.mean()
            lines.append(f"| {label} | " + " | ".join(f"{rmean.get(c, np.nan):.3f}" for c in classes)
                         + f" | {rmean.mean():.3f} |")
            lines.append(f"| {ratio} | " + " | ".join(f"{mean[c] / rmean.get(c, np.nan):.2f}x" for c in classes)
                         + f" | {mean.mean() / rmean.mean():.2f}x |")
    anchor = ANCHORS.get((dataset, protocol))
    if anchor:
        lines.append(f"| {anchor[0]}, published | " + " | ".join("" for _ in classes) + f" | {anchor[1]:.3f} |")
    other = df[df.model == "anomalyvae"].groupby("score").auroc.mean().sort_values(ascending=False)
    t = ours.groupby(["class", "seed"]).train_seconds.first()
    lines += ["", f"Goal: {GOALS.get((dataset, protocol), '-')}. Train seconds per model: median {t.median():.0f}, "
              f"max {t.max():.0f}.", "",
              "Mean AUROC of every score of the same models: "
              + ", ".join(f"{k} {v:.3f}" for k, v in other.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    ap.add_argument("--protocol", default="loo", choices=["loo", "oneclass"])
    ap.add_argument("--classes", default="0-9", help="e.g. 0-9, 1,9")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--data-dir", default=os.environ.get("ANOMALYVAE_DATA_DIR"))
    ap.add_argument("--reference", action="store_true", help="also train the seeds' VAE (one seed) per class")
    ap.add_argument("--baseline", action="store_true", help="also run raw-pixel cosine kNN per class (no model)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a Config default")
    ap.add_argument("--no-tracking", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="CSV path [default: benchmarks/results/<dataset>-<protocol>.csv]")
    ap.add_argument("--from-csv", action="store_true", help="only re-write the markdown table from the CSV")
    args = ap.parse_args()
    from anomalyvae.data.classes import parse_classes
    import yaml

    classes = sorted({int(c) for part in args.classes.split(",") for c in
                      (range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1))})
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    out = args.out or RESULTS / f"{args.dataset}-{args.protocol}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    if args.from_csv:
        md = table(pd.read_csv(out), args.dataset, args.protocol)
        out.with_suffix(".md").write_text(out.with_suffix(".md").read_text().split("\n\n")[0] + "\n\n"
                                          + out.with_suffix(".md").read_text().split("\n\n")[1] + "\n\n" + md)
        print(md)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for c in classes:
            parse_classes(normal_spec(args.protocol, c))
            for seed in range(args.seeds):
                rows += run_one(args.dataset, args.protocol, c, seed, args.data_dir, overrides, "anomalyvae",
                                Path(tmp), not args.no_tracking)
                r = [x for x in rows if x["default"] and x["class"] == c and x["seed"] == seed][0]
                print(f"{args.dataset} {args.protocol} class {c} seed {seed}: {r['score']} AUROC {r['auroc']:.4f} "
                      f"(train {r['train_seconds']:.0f}s)", flush=True)
            if args.baseline:
                rows += pixel_knn(args.dataset, args.protocol, c, args.data_dir)
            if args.reference:
                rows += run_one(args.dataset, args.protocol, c, 0, args.data_dir, {**overrides, **SEEDS_VAE}, "seeds-vae",
                                Path(tmp), not args.no_tracking)
            df = pd.DataFrame(rows)
            df.to_csv(out, index=False)
    md = table(df, args.dataset, args.protocol)
    out.with_suffix(".md").write_text(f"# {args.dataset}, {args.protocol}: test AUROC\n\n"
                                      f"`{' '.join(['python', *sys.argv])}`\n\n" + md)
    print(md)


if __name__ == "__main__":
    main()
