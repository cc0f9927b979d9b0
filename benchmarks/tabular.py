"""AnomalyVAE beside the detectors a scikit-learn or PyOD user would pick, on scikit-learn's bundled real data
(nothing to download), in one run, same splits, several seeds:

    python benchmarks/tabular.py --seeds 3          # needs `pip install -e '.[bench]'` for PyOD (stops without it)

- breast cancer (569 x 30 features): normal = benign; each seed draws 250 benign rows to fit on, the other
  107 benign and all 212 malignant rows are the test set.
- 8x8 digits (1,797 images, pixels 0..16 scaled to [0, 1]): leave one digit out; each seed fits on a random
  70% of the nine other digits, the test set is the other 30% plus every image of the left-out digit.
  AnomalyVAE gets the images (N, 8, 8); the others get the 64 pixels as features.

Every detector runs with its library's defaults (scale-sensitive ones, OCSVM and LOF, behind a
StandardScaler as their documentation advises); AUROC with anomalies as the positive class, from
`-score_samples` (scikit-learn) or `decision_function` (PyOD: higher = more anomalous).
Writes benchmarks/results/tabular.csv and tabular.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalyvae import AnomalyVAE  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def detectors(seed: int) -> dict:
    """name -> (factory, kind): kind 'sklearn' scores with -score_samples, 'pyod' with decision_function."""
    out = {
        "AnomalyVAE": (lambda: AnomalyVAE(random_state=seed), "sklearn"),
        "IsolationForest": (lambda: IsolationForest(random_state=seed), "sklearn"),
        "LOF(novelty)": (lambda: make_pipeline(StandardScaler(), LocalOutlierFactor(novelty=True)), "sklearn"),
        "OneClassSVM": (lambda: make_pipeline(StandardScaler(), OneClassSVM()), "sklearn"),
    }
    try:
        from pyod.models.auto_encoder import AutoEncoder
        from pyod.models.knn import KNN
        from pyod.models.vae import VAE

        out.update({"PyOD VAE": (lambda: VAE(random_state=seed, verbose=0), "pyod"),
                    "PyOD AutoEncoder": (lambda: AutoEncoder(random_state=seed, verbose=0), "pyod"),
                    "PyOD KNN": (lambda: KNN(), "pyod")})
    except ImportError:
        # a table without PyOD's columns would answer another question, and could flip the verdict on
        # committed results: stop, and name what to install
        sys.exit("error: PyOD is not installed, and the comparison needs its detectors; "
                 "pip install -e '.[bench]' (or pip install 'pyod>=2.0'), then run this again")
    return out


def anomaly_score(model, kind: str, X) -> np.ndarray:
    return -model.score_samples(X) if kind == "sklearn" else model.decision_function(X)


def splits(seed: int):
    """(dataset, case, X_fit, X_test, y_test, as_images) for one seed; y_test is 1 for anomalies."""
    rng = np.random.default_rng(seed)
    X, y = load_breast_cancer(return_X_y=True)
    benign, malignant = X[y == 1], X[y == 0]
    order = rng.permutation(len(benign))
    fit, rest = benign[order[:250]], benign[order[250:]]
    yield "breast-cancer", "malignant", fit, np.r_[rest, malignant], np.r_[np.zeros(len(rest)), np.ones(len(malignant))], False
    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)
    for digit in range(10):
        normal = np.flatnonzero(d.target != digit)
        order = rng.permutation(normal)
        cut = int(0.7 * len(order))
        test = np.r_[order[cut:], np.flatnonzero(d.target == digit)]
        yield ("digits-8x8", str(digit), images[order[:cut]], images[test],
               (d.target[test] == digit).astype(float), True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "tabular.csv")
    args = ap.parse_args()
    detectors(0)  # every detector of the comparison importable, before minutes of work and any file written
    rows = []
    for seed in range(args.seeds):
        for dataset, case, X_fit, X_test, y_test, as_images in splits(seed):
            for name, (make, kind) in detectors(seed).items():
                flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
                fit_X, test_X = (X_fit, X_test) if (as_images and name == "AnomalyVAE") else (flat(X_fit), flat(X_test))
                t0 = time.perf_counter()
                model = make().fit(fit_X)
                auroc = roc_auc_score(y_test, anomaly_score(model, kind, test_X))
                rows.append({"dataset": dataset, "case": case, "seed": seed, "detector": name, "auroc": auroc,
                             "seconds": round(time.perf_counter() - t0, 2)})
                print(f"{dataset:14s} {case:9s} seed {seed} {name:17s} AUROC {auroc:.3f}  "
                      f"({rows[-1]['seconds']:.1f}s)", flush=True)
    frame = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    args.out.with_suffix(".md").write_text(table(frame, args.seeds))
    print(table(frame, args.seeds))


def table(frame: pd.DataFrame, seeds: int) -> str:
    """Mean AUROC over cases (then seeds, ± std over seeds) per data set, and the ratio to the best other."""
    per_seed = frame.groupby(["dataset", "detector", "seed"])["auroc"].mean().reset_index()
    agg = per_seed.groupby(["dataset", "detector"])["auroc"].agg(["mean", "std"]).reset_index()
    lines = [f"Mean AUROC ({seeds} seeds; ± standard deviation over seeds). "
             f"Command: python benchmarks/tabular.py --seeds {seeds}", ""]
    for dataset, part in agg.groupby("dataset"):
        part = part.sort_values("mean", ascending=False)
        ours = float(part[part.detector == "AnomalyVAE"]["mean"].iloc[0])
        best_other = part[part.detector != "AnomalyVAE"].iloc[0]
        lines += [f"**{dataset}**", "", "| detector | mean AUROC | AnomalyVAE / it |", "|---|---|---|"]
        for _, r in part.iterrows():
            lines.append(f"| {r.detector} | {r['mean']:.3f} ± {0 if np.isnan(r['std']) else r['std']:.3f} | "
                         f"{ours / r['mean']:.3f}x |")
        lines += ["", f"AnomalyVAE {ours:.3f} vs the best other ({best_other.detector}) {best_other['mean']:.3f}: "
                  f"{'>=' if ours >= best_other['mean'] else '<'} ({ours / best_other['mean']:.3f}x)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
