"""Cross-dataset detection: train on every class of one dataset, the other dataset's test split is the anomaly.

    OMP_NUM_THREADS=1 python benchmarks/cross_dataset.py --data-dir ../shared/datasets/mnist   # ~10 min

For every ordered pair of the datasets the project knows (config.IDX_DATASETS), trains with the defaults and
--normal all on the first (the CLI's code: pipeline.train_detector), then evaluates as
`anomalyvae evaluate --anomalies <second>` does: the first dataset's whole test split is normal, the second's
whole test split anomalous. Reports every score's AUROC. The literature's anchor: a VAE's likelihood rates
MNIST as *more* likely than the Fashion-MNIST it was trained on (Nalisnick et al. 2019, "Do deep generative
models know what they don't know?"), so `recon` / `elbo` fall below 0.5 there; Likelihood Regret (Xiao et al.
2020) reaches about 0.99. Writes benchmarks/results/cross-dataset.{md,csv}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from itertools import permutations
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalyvae.config import IDX_DATASETS, make_config  # noqa: E402
from anomalyvae.pipeline.images import evaluate_detector, train_detector  # noqa: E402
from anomalyvae.data.testsets import build  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GOAL = 0.99


def run(normal: str, anomalies: str, data_dir: str | None, work: Path, seed: int, limit: int | None) -> list[dict]:
    cfg = make_config(dataset=normal, data_dir=data_dir, normal="all", seed=seed, limit=limit)
    t0 = time.perf_counter()
    det, out = train_detector(cfg, out=work / f"{normal}-all", log=lambda m: None)
    train_wall = time.perf_counter() - t0
    test = build(det, data_dir, anomalies=anomalies)
    res = evaluate_detector(det, out / "evaluation", test=test, model_dir=out)
    return [{"train": normal, "anomalies": anomalies, "score": name, "default": name == det.score_,
             "auroc": r["auroc"], "auprc": r["auprc"], "n_test": res["n_test"], "seed": seed,
             "train_seconds": round(train_wall, 1)} for name, r in res["scores"].items()]


def table(df: pd.DataFrame, command: str) -> str:
    scores = list(dict.fromkeys(df.score))
    default = df[df.default].score.iloc[0]
    lines = ["# Cross-dataset: train on every class of one dataset, the other's test split is the anomaly", "",
             f"`{command}`", "",
             "| trained on (all classes) | anomalies | " + " | ".join(
                 f"**{s}** (default)" if s == default else s for s in scores) + " |",
             "|---|---|" + "---|" * len(scores)]
    for (train, anomalies), g in df.groupby(["train", "anomalies"], sort=False):
        a = dict(zip(g.score, g.auroc))
        lines.append(f"| {train} | {anomalies} test split | " + " | ".join(
            f"**{a[s]:.4f}**" if s == default else f"{a[s]:.4f}" for s in scores) + " |")
    secs = df.groupby("train").train_seconds.first()
    lines += ["", f"AUROC, anomalies positive; each test set is both test splits (10,000 + 10,000 images). "
              f"Goal: the default score >= {GOAL} in both directions. Train wall seconds (one thread, 2 shared "
              "cores): " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()) + ".", "",
              "Literature: a VAE's likelihood rates MNIST as more likely than Fashion-MNIST itself (Nalisnick et "
              "al. 2019), so likelihood scores (recon, elbo, iwae) fall below 0.5 when Fashion-MNIST is normal; "
              "Likelihood Regret (Xiao et al. 2020) reaches about 0.99."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="where the IDX files are (Fashion-MNIST is also looked for in its Debian folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="train on at most this many images (smoke runs; results not written)")
    args = p.parse_args()
    command = "OMP_NUM_THREADS=1 python benchmarks/cross_dataset.py" + "".join(f" {a}" for a in sys.argv[1:])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for normal, anomalies in permutations(IDX_DATASETS, 2):
            new = run(normal, anomalies, args.data_dir, Path(tmp), args.seed, args.limit)
            rows += new
            print(f"{normal} -> {anomalies}: " + ", ".join(f"{r['score']} {r['auroc']:.4f}" for r in new), flush=True)
    df = pd.DataFrame(rows)
    text = table(df, command)
    print(text)
    if args.limit is None:
        RESULTS.mkdir(exist_ok=True)
        df.to_csv(RESULTS / "cross-dataset.csv", index=False)
        (RESULTS / "cross-dataset.md").write_text(text)


if __name__ == "__main__":
    main()
