"""Colour at full size against the same pipeline forced to grey 28 px, on the synthetic inspection set.

    OMP_NUM_THREADS=1 python benchmarks/synthetic_inspection.py            # ~10 min on 2 shared cores
    python benchmarks/synthetic_inspection.py --quick                      # 1-minute smoke run

Writes the MVTec-AD-layout dataset (anomalyvae.data.synthetic: 300 training images of 128 px, 40 normal and 20 per
defect type in test, with masks), trains two models through the CLI's code (configs/mvtec.yaml), one in the
images' own colour at 128 px and one with --channels 1 --image-size 28, evaluates both on the same test set
(pixel metrics at the files' 128 px, the grey model's maps resized up), and reports image AUROC (the default
score and `peak`), pixel AUROC and AUPRO overall and per defect type, with the colour / grey ratio measured in
the same run. Then scores folders of 1,000 and 2,000 such PNGs in a fresh process each (the `score` command's
code path), for images per second and peak memory. Writes benchmarks/results/synthetic-inspection.{md,json}
and an example picture per defect type, synthetic-inspection.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalyvae.data import synthetic  # noqa: E402
from anomalyvae.config import make_config  # noqa: E402
from anomalyvae.pipeline.images import evaluate_detector, train_detector  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CONFIG = HERE.parent / "configs" / "mvtec.yaml"
SPEED_CODE = """
import resource, sys, time
from anomalyvae.estimator import AnomalyVAE
from anomalyvae.pipeline.files import score_paths
det = AnomalyVAE.load(sys.argv[1], "cpu")
t = time.perf_counter()
s = score_paths(det, [sys.argv[2]], sys.argv[3])
dt = time.perf_counter() - t
print(s.n_scored, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def run(root: Path, work: Path, label: str, **overrides) -> dict:
    cfg = make_config(CONFIG, data_dir=str(root), **overrides)
    t0 = time.perf_counter()
    det, out = train_detector(cfg, out=work / label, log=lambda m: None)
    wall = time.perf_counter() - t0
    res = evaluate_detector(det, out / "evaluation", model_dir=out)
    return {"label": label, "model_dir": str(out), "input_shape": list(det.input_shape_), "wall_seconds": wall,
            "train_seconds": det.info_["train_seconds"], "epochs": det.info_["epochs_run"], "metrics": res}


def speed(model_dir: str, folder: Path, work: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", SPEED_CODE, model_dir, str(folder), str(work / f"{folder.name}.csv")],
                       capture_output=True, text=True, check=True, env={**os.environ})
    n, seconds, rss = r.stdout.split()
    return {"files": int(n), "seconds": float(seconds), "images_per_second": int(n) / float(seconds),
            "peak_rss_mb": float(rss)}


def flat_folder(root: Path, n: int, size: int) -> Path:
    """n normal surfaces as PNGs in one folder (training images of another seed: never seen by the model)."""
    tmp = synthetic.generate(root.parent / f"{root.name}-speed-{n}", n_train=n, n_test_good=0, n_per_defect=0,
                             size=size, seed=99, defects=())
    return tmp / "train" / "good"


def row(name: str, m: dict) -> dict:
    return {"model": name, "image_auroc": m["auroc"], "image_auroc_peak": m["scores"]["peak"]["auroc"],
            "pixel_auroc": m["pixel_auroc"], "pixel_aupro": m["pixel_aupro"]}


def per_defect(m: dict) -> dict:
    return {r["class"]: r for r in m["per_class"] if r["anomaly"]}


def report(colour: dict, grey: dict, speeds: list[dict], args, command: str) -> str:
    c, g = colour["metrics"], grey["metrics"]
    keys = ["image_auroc", "image_auroc_peak", "pixel_auroc", "pixel_aupro"]
    rc, rg = row("colour", c), row("grey", g)
    lines = [
        "# Synthetic inspection set: colour 128 px vs grey 28 px", "", f"`{command}`", "",
        f"{args.n_train} training images of {args.size} px; test: {args.n_good} normal, {args.n_defect} per defect type "
        f"({', '.join(synthetic.DEFECTS)}); seed {args.seed}; both models trained with configs/mvtec.yaml in the "
        "same run, the grey one with --channels 1 --image-size 28.", "",
        f"| model | image AUROC ({c['score']}, default) | image AUROC (peak) | pixel AUROC | AUPRO (30% FPR) |",
        "|---|---|---|---|---|",
        f"| colour, {args.size} px (RGB) | " + " | ".join(f"{rc[k]:.3f}" for k in keys) + " |",
        "| grey, 28 px (--channels 1 --image-size 28) | " + " | ".join(f"{rg[k]:.3f}" for k in keys) + " |",
        "| ratio colour / grey | " + " | ".join(f"{rc[k] / rg[k]:.2f}x" for k in keys) + " |", "",
        "Per defect type (image AUROC of the default score / of peak, pixel AUROC, AUPRO; each defect type's "
        "images against every normal one):", "",
        f"| defect | colour {args.size} px | grey 28 px | ratio (pixel AUROC, AUPRO) |", "|---|---|---|---|"]
    pc, pg = per_defect(c), per_defect(g)
    cs, gs = colour["peak_per_class"], grey["peak_per_class"]
    for d in synthetic.DEFECTS:
        a, b = pc[d], pg[d]
        lines.append(f"| {d} | {a['auroc']:.3f} / {cs[d]:.3f}, {a['pixel_auroc']:.3f}, {a['pixel_aupro']:.3f} | "
                     f"{b['auroc']:.3f} / {gs[d]:.3f}, {b['pixel_auroc']:.3f}, {b['pixel_aupro']:.3f} | "
                     f"{a['pixel_auroc'] / b['pixel_auroc']:.2f}x, {a['pixel_aupro'] / b['pixel_aupro']:.2f}x |")
    lines += ["", f"Training wall time (data loading, training, calibration, saving; {os.environ.get('OMP_NUM_THREADS', 'all')} "
              f"thread(s), 2 cores shared with other jobs): colour {colour['wall_seconds']:.0f} s "
              f"({colour['epochs']} epochs), grey {grey['wall_seconds']:.0f} s. Goal: colour <= 300 s.", "",
              "Scoring folders of the colour model's PNGs (the `score` command's code, in a fresh process each):", "",
              "| files | seconds | images/s | peak memory (MB) |", "|---|---|---|---|"]
    lines += [f"| {s['files']} | {s['seconds']:.1f} | {s['images_per_second']:.0f} | {s['peak_rss_mb']:.0f} |" for s in speeds]
    lines += ["", "Goal: >= 200 images/s, memory flat in the number of files.", "",
              "Anomaly maps: which per-pixel error, how much smoothing (sigma as a fraction of the image side; "
              "pixel AUROC / AUPRO / image AUROC of the map's maximum):", "",
              "| model | error | " + " | ".join(f"sigma {s:.4f}" for s in SIGMAS) + " |",
              "|---|---|" + "---|" * len(SIGMAS)]
    study = colour["map_study"] + grey["map_study"]
    for (model, kind) in dict.fromkeys((r["model"], r["error"]) for r in study):
        cells = [r for r in study if r["model"] == model and r["error"] == kind]
        lines.append(f"| {model} | {kind} | " + " | ".join(
            f"{r['pixel_auroc']:.3f} / {r['pixel_aupro']:.3f} / {r['image_auroc_peak']:.3f}" for r in cells) + " |")
    return "\n".join(lines) + "\n"


def peak_per_class(model_dir: str, root: Path) -> dict:
    """Image AUROC of `peak` per defect type (evaluate's per-class table has the default score's only)."""
    import torch
    from sklearn.metrics import roc_auc_score

    from anomalyvae.estimator import AnomalyVAE
    from anomalyvae.data.layouts import load_test_set, mvtec_test

    det = AnomalyVAE.load(model_dir, "cpu")
    ts = load_test_set(mvtec_test(root), det.input_shape_[-1], det.input_shape_[0])
    peak = det.anomaly_scores(torch.from_numpy(ts.images), which=["peak"])["peak"]
    out = {}
    for k, name in enumerate(ts.names):
        if k:
            sel = (ts.labels == 0) | (ts.labels == k)
            out[name] = float(roc_auc_score(ts.labels[sel] == k, peak[sel]))
    return out


SIGMAS = (0.0, 1 / 128, 1 / 64, 1 / 32, 1 / 16)


def map_study(run_: dict, root: Path) -> list[dict]:
    """Which per-pixel error and how much smoothing make the best maps: pixel AUROC, AUPRO and the image AUROC
    of the maps' maxima (`peak`), for the squared error, the Bernoulli -log p(x_i | z) the `recon` score
    sums, and that minus its minimum over the reconstruction (the entropy of x_i), each smoothed by a Gaussian
    of sigma x the image side."""
    import torch
    from sklearn.metrics import roc_auc_score

    from anomalyvae.estimator import AnomalyVAE
    from anomalyvae.data.layouts import load_test_set, mvtec_test
    from anomalyvae.pipeline.images import pixel_results
    from anomalyvae.detectors.maps import smooth

    det = AnomalyVAE.load(run_["model_dir"], "cpu")
    ts = load_test_set(mvtec_test(root), det.input_shape_[-1], det.input_shape_[0])
    with torch.inference_mode():
        x = det.model_.prepare(torch.from_numpy(ts.images))
        out = det.model_.decode(det.model_.encode(x)[0])
        nll = det.model_.nll_terms(out, x)
        xc = x.clamp(1e-6, 1 - 1e-6)
        entropy = -(xc * xc.log() + (1 - xc) * (1 - xc).log())
        errors = {"squared error": (x - det.model_.mean(out)).pow(2).sum(1), "Bernoulli -log p": nll.sum(1),
                  "-log p minus its minimum": (nll - entropy).sum(1)}
        rows = []
        for kind, e in errors.items():
            for sigma in SIGMAS:
                maps = smooth(e, sigma).numpy()
                px = pixel_results(maps, ts, [])
                peak = roc_auc_score(ts.anomalous, maps.reshape(len(maps), -1).max(1))
                rows.append({"model": run_["label"], "error": kind, "sigma": sigma, "image_auroc_peak": peak, **px})
    return rows


def picture(colour: dict, grey: dict, root: Path, path: Path) -> None:
    """One example per defect type: the colour model's picture above the grey model's, same file."""
    import torch
    from PIL import Image

    from anomalyvae.evaluation import heatmaps
    from anomalyvae.estimator import AnomalyVAE
    from anomalyvae.data.images import load_image

    rows = []
    for d in synthetic.DEFECTS:
        f = root / "test" / d / "000.png"
        for run_ in (colour, grey):
            det = AnomalyVAE.load(run_["model_dir"], "cpu")
            x = torch.from_numpy(load_image(f, det.input_shape_[-1], det.input_shape_[0])[None].copy())
            maps, recs = det.maps_and_recons(x)
            score = det.anomaly_scores(x, which=["peak"])["peak"][0]
            name = f"colour {det.input_shape_[-1]} px" if run_ is colour else "grey 28 px"
            rows.append(heatmaps.figure(load_image(f, None, 3), recs[0], maps[0], heatmaps.map_vmax(det, maps),
                                        f"{d}, {name}: peak {score:.3f}"))
    w = max(r.shape[1] for r in rows)
    canvas = np.full((sum(r.shape[0] + 6 for r in rows), w, 3), 255, np.uint8)
    y = 0
    for r in rows:
        canvas[y:y + r.shape[0], :r.shape[1]] = r
        y += r.shape[0] + 6
    Image.fromarray(canvas).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, help="where to write the dataset [default: a temporary folder]")
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-good", type=int, default=40)
    p.add_argument("--n-defect", type=int, default=20)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed-files", default="1000,2000")
    p.add_argument("--quick", action="store_true", help="small and short: a smoke run, results not written")
    args = p.parse_args()
    if args.quick:
        args.n_train, args.n_good, args.n_defect, args.size, args.speed_files = 40, 6, 3, 64, "50,100"
    command = "OMP_NUM_THREADS=1 python benchmarks/synthetic_inspection.py" + " ".join(
        f" {a}" for a in sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = args.root or work / "surface"
        synthetic.generate(root, args.n_train, args.n_good, args.n_defect, args.size, args.seed)
        extra = {"epochs": 2} if args.quick else {}
        colour = run(root, work, "colour", image_size=args.size, **extra)
        grey = run(root, work, "grey", channels=1, image_size=28, **extra)
        for r in (colour, grey):
            r["peak_per_class"] = peak_per_class(r["model_dir"], root)
            r["map_study"] = map_study(r, root)
        speeds = [speed(colour["model_dir"], flat_folder(work / "s", int(n), args.size), work)
                  for n in args.speed_files.split(",")]
        text = report(colour, grey, speeds, args, command)
        print(text)
        if not args.quick:
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / "synthetic-inspection.md").write_text(text)
            (RESULTS / "synthetic-inspection.json").write_text(json.dumps(
                {"args": vars(args), "colour": colour, "grey": grey, "speed": speeds}, indent=1, default=str))
            picture(colour, grey, root, RESULTS / "synthetic-inspection.png")


if __name__ == "__main__":
    main()
