"""Speed of anomalyvae against the seeds' training loop, in one process and one invocation (issue 4).

    .venv/bin/python benchmarks/speed.py                 # full run: a few minutes on 2 cores
    .venv/bin/python benchmarks/speed.py --quick         # a smoke run: 1 epoch, 1 repetition, small folders

The seeds' loop is pytorch/examples' vae/main.py reimplemented faithfully: torchvision.datasets.MNIST read from
the IDX files + ToTensor + DataLoader (batch 128, shuffled), MLP 784-400-20, BCE(sum) + KL, Adam 1e-3. Both
sides train on the same 54k normal images (MNIST train, digits 0-8) and validate on MNIST test digits 0-8;
their epoch times (train pass + validation pass) alternate in the same process, so load on a shared machine
hits both alike. The last line is `name=value` pairs for scripts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyvae.detectors import knn, scoring
from anomalyvae.vae import runtime  # noqa: E402
from anomalyvae.config import Config, make_config  # noqa: E402
from anomalyvae.data.datasets import Split, load_idx_split  # noqa: E402
from anomalyvae.evaluation.metrics import ranking  # noqa: E402
from anomalyvae.estimator import AnomalyVAE  # noqa: E402
from anomalyvae.detectors.whole import WholeState, score_inputs  # noqa: E402

NORMAL = list(range(9))


def say(*a) -> None:
    print(*a, flush=True)


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} CPUs"


# -- the seeds' loop: pytorch/examples vae/main.py --------------------------------------------------------
class SeedsVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def seeds_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def seeds_epoch(model, optimizer, train_loader, test_loader) -> float:
    """train(epoch) then test(epoch) as in the example (minus its printing and image saving); returns seconds."""
    t0 = time.perf_counter()
    model.train()
    train_loss = 0.0
    for data, _ in train_loader:
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = seeds_loss(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for data, _ in test_loader:
            recon_batch, mu, logvar = model(data)
            test_loss += seeds_loss(recon_batch, data, mu, logvar).item()
    return time.perf_counter() - t0


def seeds_loaders(root: Path):
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    train = datasets.MNIST(str(root), train=True, download=True, transform=transforms.ToTensor())
    test = datasets.MNIST(str(root), train=False, download=True, transform=transforms.ToTensor())
    pick = lambda ds: Subset(ds, torch.isin(ds.targets, torch.tensor(NORMAL)).nonzero().squeeze(1).tolist())
    return (DataLoader(pick(train), batch_size=128, shuffle=True),
            DataLoader(pick(test), batch_size=128, shuffle=False))


@torch.no_grad()
def val_loss_at_mu(encode, decode_logits, images: torch.Tensor) -> float:
    """Mean BCE(sum) + KL per image with z = mu: the same deterministic yardstick for both models."""
    x = images.float().div(255).flatten(1)
    mu, logvar = encode(x)
    logits = decode_logits(mu).flatten(1)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return float(bce + kld) / len(images)


def seeds_val(model, images):
    return val_loss_at_mu(model.encode, lambda z: model.fc4(F.relu(model.fc3(z))), images)


def ours_val(model, images):
    return val_loss_at_mu(model.encode, model.decode, images)


def fit(cfg: Config, train: Split, val: Split):
    """anomalyvae's training as `anomalyvae train` and `AnomalyVAE.fit` run it: (train.FitResult, estimator)."""
    est = AnomalyVAE.from_config(cfg)
    return est.fit_splits(cfg, train, val), est


# -- sections ---------------------------------------------------------------------------------------------
def bench_training(args, data_dir: Path, tmp: Path, train: Split, val: Split, test: Split, threads: int):
    root = tmp / "tv"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for f in data_dir.glob("*-ubyte.gz"):  # torchvision checks the md5 of these and extracts them, offline
        os.symlink(f.resolve(), root / "MNIST" / "raw" / f.name)
    train_loader, test_loader = seeds_loaders(root)
    cfg = make_config(arch="mlp", hidden=400, latent_dim=20, batch_size=128, lr=1e-3, epochs=args.epochs,
                      patience=args.epochs, threads=threads)
    say(f"\n## Training: MLP 784-400-20, batch 128, Adam 1e-3, {args.epochs} epoch(s) x {args.reps} repetition(s), "
        f"{len(train)} train / {len(val)} validation images; the seeds' loop, anomalyvae (precision "
        f"'{cfg.precision}' -> {runtime.resolve_precision(cfg.precision, 'train')}) and anomalyvae in the other "
        f"precision alternate")
    seeds_t, ours_t, seeds_v, ours_v, alt_t, aurocs = [], [], [], [], [], {"bfloat16": [], "float32": []}
    ours_model = None
    y = ~np.isin(test.labels.numpy(), NORMAL)
    for rep in range(args.reps):
        order = ("seeds", "ours", "alt") if rep % 2 == 0 else ("ours", "seeds", "alt")  # each pair adjacent
        for who in order:
            if who == "seeds":
                torch.manual_seed(1 + rep)
                model = SeedsVAE()
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                times = [seeds_epoch(model, opt, train_loader, test_loader) for _ in range(args.epochs)]
                seeds_t += times
                seeds_v.append(seeds_val(model, val.images))
                say(f"  rep {rep + 1} seeds' loop : epochs {' '.join(f'{t:.2f}s' for t in times)}  "
                    f"val loss {seeds_v[-1]:.2f}  [{load_note()}]")
            else:
                auto = runtime.resolve_precision(cfg.precision, "train")
                precision = ({"float32": "bfloat16"}.get(auto, "float32")) if who == "alt" else cfg.precision
                res, est = fit(make_config(**{**cfg.to_dict(), "seed": rep, "precision": precision}), train, val)
                times = [h.seconds for h in res.history]
                used = runtime.resolve_precision(precision, "train")
                # training precision alone: both models scored in float32
                auroc = ranking(y, score_inputs(res.model, test.images, WholeState(),
                                                make_config(**{**cfg.to_dict(), "precision": "float32"}),
                                                ("elbo",))["elbo"])["auroc"]
                aurocs[used].append(auroc)
                if who == "alt":
                    alt_t += times
                else:
                    ours_t += times
                    ours_v.append(ours_val(res.model, val.images))
                    ours_model = est
                say(f"  rep {rep + 1} anomalyvae {used:8s}: epochs {' '.join(f'{t:.2f}s' for t in times)}  "
                    f"val loss {ours_val(res.model, val.images):.2f}  elbo AUROC {auroc:.4f}  [{load_note()}]")
    # load on a shared machine drifts within minutes: pair each repetition's runs, take the median ratio
    e = args.epochs
    paired = [statistics.median(seeds_t[r * e:(r + 1) * e]) / statistics.median(ours_t[r * e:(r + 1) * e])
              for r in range(args.reps)]
    s, o = statistics.median(seeds_t), statistics.median(ours_t)
    sv, ov = statistics.median(seeds_v), statistics.median(ours_v)
    say(f"  median epoch: seeds' loop {s:.2f}s, anomalyvae {o:.2f}s ({len(train) / o:.0f} vs {len(train) / s:.0f} "
        f"train images/s); speedup per repetition {' '.join(f'{p:.2f}x' for p in paired)} -> median "
        f"{statistics.median(paired):.2f}x")
    say(f"  median final validation loss (z = mu): seeds' loop {sv:.2f}, anomalyvae {ov:.2f} "
        f"({100 * (ov - sv) / sv:+.2f}%)")
    f, alt = statistics.median(alt_t), {"float32": "bfloat16"}.get(runtime.resolve_precision(cfg.precision, "train"), "float32")
    say(f"  anomalyvae's loop in {alt}: {f:.2f}s an epoch ({s / f:.2f}x the seeds' loop); elbo AUROC (digit 9 "
        f"as the anomaly) by training precision: " + ", ".join(
            f"{k} {' '.join(f'{a:.4f}' for a in v)}" for k, v in aurocs.items() if v))
    # the honest floor: the matmul work of a training epoch (forward 2 flops per weight, backward twice that;
    # validation forward only) over its time, against the same CPU's float32 matmul rate measured now
    weights = sum(m.weight.numel() for m in SeedsVAE().modules() if isinstance(m, nn.Linear))
    epoch_flops = 6 * weights * len(train) + 2 * weights * len(val)
    peak = matmul_peak(threads)
    say(f"  matmul work per epoch {epoch_flops / 1e9:.1f} GFLOP -> anomalyvae {epoch_flops / o / 1e9:.1f} GFLOP/s, "
        f"{100 * epoch_flops / o / peak:.0f}% of this CPU's float32 matmul rate measured now "
        f"({peak / 1e9:.1f} GFLOP/s, 2048x2048 torch.mm, {threads} thread(s)); the seeds' loop "
        f"{100 * epoch_flops / s / peak:.0f}%")
    return {"train_speedup": statistics.median(paired), "seeds_epoch_s": s, "anomalyvae_epoch_s": o,
            "val_loss_diff_pct": 100 * (ov - sv) / sv, "matmul_peak_gflops": peak / 1e9,
            "train_peak_fraction": epoch_flops / o / peak}, ours_model, cfg


def matmul_peak(threads: int, n: int = 2048) -> float:
    """float32 matmul flops per second on this CPU at `threads` threads (median of 5 products)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / timed(lambda: torch.mm(a, b), 5)


def timed(fn, reps: int) -> float:
    fn()  # warm-up: oneDNN builds its kernels on first use
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_scoring(args, dets: dict, test: Split):
    default = Config().score
    y = ~np.isin(test.labels.numpy(), NORMAL)
    say(f"\n## Scoring {len(test)} MNIST test images from a uint8 tensor (default score: '{default}'), "
        f"median of {args.reps * 3} runs")
    out = {}
    for arch, det in dets.items():
        for name in ("recon", default):
            for precision in ("float32", "bfloat16"):
                at = dataclasses.replace(det.config_, precision=precision)
                run = lambda: score_inputs(det.model_, test.images, det.state_, at, (name,))
                sec = timed(run, args.reps * 3)
                auroc = ranking(y, run()[name])["auroc"]
                say(f"  {arch:4s} {name:8s} {precision:8s}: {len(test) / sec:9.0f} images/s   AUROC {auroc:.4f}")
                out[(arch, name, precision)] = (len(test) / sec, auroc)
            run = lambda: det.anomaly_scores(test.images, which=(name,))
            sec = timed(run, args.reps * 3)
            used = det.config_.precision
            say(f"  {arch:4s} {name:8s} as the estimator runs it (precision '{used}' -> "
                f"{runtime.resolve_precision(used, 'score')}): {len(test) / sec:9.0f} images/s")
            out[(arch, name, "detector")] = (len(test) / sec, None)
    for arch in dets:
        for name in ("recon", default):
            d = out[(arch, name, "bfloat16")][1] - out[(arch, name, "float32")][1]
            say(f"  bf16 - float32 AUROC, {arch} {name}: {d:+.4f}")
    say("  the knn score's search (anomalyvae/detectors/knn.py) against the exact search it replaced, same model, same run:")
    for arch, det in dets.items():
        index = det.state_.knn_index(det.config_.knn_k)
        exact = lambda mu, state, k: knn.exact_knn(mu, state.codes, k)
        rows = {}
        for label, search in (("exact", exact), ("index", scoring.knn_distance)):
            saved, scoring.knn_distance = scoring.knn_distance, search
            try:
                run = lambda: det.anomaly_scores(test.images, which=("knn", default))
                sec = timed(run, args.reps * 3)
                got = run()
            finally:
                scoring.knn_distance = saved
            rows[label] = (len(test) / sec, ranking(y, got["knn"])["auroc"], ranking(y, got[default])["auroc"])
        (e_rate, e_knn, e_def), (i_rate, i_knn, i_def) = rows["exact"], rows["index"]
        recon = out[(arch, "recon", "detector")][0]
        say(f"  {arch:4s} {'faiss IVF' if index.ivf is not None else 'exact (few codes)'} over "
            f"{len(det.state_.codes)} codes: knn+{default} {i_rate:.0f} images/s vs {e_rate:.0f} exact "
            f"({i_rate / e_rate:.1f}x); AUROC digit 9: knn {i_knn:.4f} vs {e_knn:.4f} ({i_knn - e_knn:+.4f}), "
            f"{default} {i_def:.4f} vs {e_def:.4f} ({i_def - e_def:+.4f}); default score / recon throughput "
            f"{out[(arch, default, 'detector')][0] / recon:.2f}x (goal >= 0.8x)")
    fashion = int(0.9 * 6000)  # one-class Fashion-MNIST: a class's 6,000 training images less the 10% held out
    say(f"  Fashion-MNIST one-class: {fashion} normal codes < knn.IVF_MIN_CODES = {knn.IVF_MIN_CODES}: searched "
        f"exactly, so its AUROC is the exact search's")
    return {"recon_img_per_s": out[("mlp", "recon", "detector")][0],
            "default_img_per_s": out[("mlp", default, "detector")][0],
            "default_vs_recon": out[("mlp", default, "detector")][0] / out[("mlp", "recon", "detector")][0],
            "conv_default_vs_recon": out[("conv", default, "detector")][0] / out[("conv", "recon", "detector")][0],
            "conv_recon_img_per_s": out[("conv", "recon", "detector")][0],
            "conv_default_img_per_s": out[("conv", default, "detector")][0]}


CHILD = textwrap.dedent("""
    import sys, time
    t0 = time.perf_counter()
    from anomalyvae.estimator import AnomalyVAE
    from anomalyvae.pipeline.files import score_paths
    det = AnomalyVAE.load(sys.argv[1])
    t1 = time.perf_counter()
    s = score_paths(det, sys.argv[3:], csv=sys.argv[2])
    t2 = time.perf_counter()
    rss = {l.split(':')[0]: int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(('VmHWM', 'VmRSS'))}
    print(s.n_files, s.n_scored, s.n_errors, round(t1 - t0, 3), round(t2 - t1, 3), rss['VmHWM'] // 1024, flush=True)
""")


def score_folder(model_dir: Path, folders: list[Path], csv: Path) -> dict:
    """Score in a fresh process, so peak RSS (VmHWM) is that of one `score` job, not of this benchmark."""
    r = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), str(csv), *map(str, folders)],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode:
        raise SystemExit(f"scoring child failed:\n{r.stderr}")
    n, ok, bad, load_s, score_s, hwm = r.stdout.split()
    return {"n": int(n), "ok": int(ok), "errors": int(bad), "load_s": float(load_s), "score_s": float(score_s),
            "peak_rss_mb": int(hwm)}


def bench_png(args, det, test: Split, tmp: Path):
    from PIL import Image

    folder = tmp / "png" / "0"
    folder.mkdir(parents=True)
    n = min(args.png_files, len(test))
    for i in range(n):
        Image.fromarray(test.images[i, 0].numpy()).save(folder / f"{i:05d}.png")
    model_dir = tmp / "model"
    det.save(model_dir)
    say(f"\n## Scoring a folder of {n} PNG files end to end (anomalyvae.pipeline.files.score_paths -> CSV, "
        f"'{det.score_}' model, fresh process per run)")
    runs = [score_folder(model_dir, [folder], tmp / "s.csv") for _ in range(max(1, args.reps))]
    best = sorted(runs, key=lambda r: r["score_s"])[len(runs) // 2]
    rate = best["n"] / best["score_s"]
    say(f"  {best['n']} files ({best['errors']} errors): {best['score_s']:.2f}s -> {rate:.0f} images/s "
        f"(median of {len(runs)}; model load {best['load_s']:.2f}s not counted), peak RSS {best['peak_rss_mb']} MB")
    out = {"png_img_per_s": rate, "png_peak_rss_mb": best["peak_rss_mb"]}
    if args.memory_files:
        copies = -(-args.memory_files // n)
        for c in range(1, copies):  # hard links: 200k directory entries without 200k files' worth of disk
            d = tmp / "png" / str(c)
            d.mkdir()
            for i in range(n):
                os.link(folder / f"{i:05d}.png", d / f"{i:05d}.png")
        big = score_folder(model_dir, [tmp / "png"], tmp / "big.csv")
        say(f"  memory check: {big['n']} files in {copies} folders: {big['score_s']:.1f}s "
            f"({big['n'] / big['score_s']:.0f} images/s), peak RSS {big['peak_rss_mb']} MB "
            f"(vs {best['peak_rss_mb']} MB for {n} files)")
        out.update({"bigfolder_files": big["n"], "bigfolder_peak_rss_mb": big["peak_rss_mb"]})
    return out


FIRST_BATCH = textwrap.dedent("""
    import os, sys, time
    from anomalyvae.config import make_config
    from anomalyvae.pipeline.images import train_detector
    from anomalyvae.tracking.runs import Tracker
    def first(*a):
        print('first-batch', flush=True)
        os._exit(0)
    cfg = make_config(data_dir=sys.argv[1], tracking_uri=sys.argv[2])
    train_detector(cfg, out=sys.argv[3], tracker=Tracker(cfg.experiment, cfg.tracking_uri, enabled=sys.argv[2] != '-'),
                   on_step=first)
""")


def bench_startup(args, data_dir: Path, tmp: Path, model_dir: Path | None = None):
    exe = Path(sys.executable).with_name("anomalyvae")
    cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "anomalyvae", "--help"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    say("\n## Start-up (fresh processes, median of 3)")
    helps = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env)
        helps.append(time.perf_counter() - t0)
    say(f"  `anomalyvae --help`: {statistics.median(helps):.2f}s (goal < 0.3 s)")
    out = {"help_s": statistics.median(helps)}
    if model_dir is not None:
        from PIL import Image

        Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp / "one.png")
        score = [*cmd[:-1], "score", str(tmp / "one.png"), "--model", str(model_dir), "--out", str(tmp / "one.csv")]
        ones = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(score, capture_output=True, check=True, env=env, cwd=tmp)
            ones.append(time.perf_counter() - t0)
        say(f"  `anomalyvae score one.png --model DIR` (the default conv model): {statistics.median(ones):.2f}s "
            f"(goal < 2.5 s)")
        out["score_one_s"] = statistics.median(ones)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    for label, tracking in (("with MLflow tracking (sqlite store already created)", uri), ("--no-tracking", "-")):
        ts = []
        for i in range(4 if tracking != "-" else 3):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", FIRST_BATCH, str(data_dir), tracking, str(tmp / f"m{label[:4]}{i}")],
                               capture_output=True, text=True, env=env, cwd=tmp)
            if "first-batch" not in r.stdout:
                raise SystemExit(f"first-batch child failed:\n{r.stderr}")
            ts.append(time.perf_counter() - t0)
        if tracking != "-":
            ts = ts[1:]  # the first run creates the store (MLflow's schema migrations), once per folder
        say(f"  process start to first training batch (default config), {label}: {statistics.median(ts):.2f}s")
        out["first_batch_s" if tracking != "-" else "first_batch_notrack_s"] = statistics.median(ts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("ANOMALYVAE_DATA_DIR", ROOT.parent / "shared/datasets/mnist")))
    ap.add_argument("--epochs", type=int, default=2, help="epochs per training run (both sides)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each timed thing")
    ap.add_argument("--conv-epochs", type=int, default=1, help="epochs for the conv model that scoring uses")
    ap.add_argument("--png-files", type=int, default=10000)
    ap.add_argument("--memory-files", type=int, default=200000, help="files for the memory check (0: skip)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both sides [default: anomalyvae's choice]")
    ap.add_argument("--quick", action="store_true", help="1 epoch, 1 repetition, 2000 PNGs, 20k-file memory check")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.reps, args.png_files, args.memory_files = 1, 1, 2000, min(args.memory_files, 20000)
    threads = args.threads or runtime.pick_threads(None)
    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    say(f"# benchmarks/speed.py  torch {torch.__version__}  {runtime.cpu_name()}  "
        f"native bf16: {runtime.native_bf16()}  torch threads: {threads}  OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    say(f"# at start: {load_note()}")
    full = load_idx_split("mnist", args.data, "train")
    test = load_idx_split("mnist", args.data, "test")
    normal = lambda s: s.subset(torch.isin(s.labels, torch.tensor(NORMAL)).nonzero().squeeze(1))
    train, val = normal(full), normal(test)
    tmp = Path(tempfile.mkdtemp(prefix="anomalyvae-speed-"))
    try:
        res, mlp_det, _ = bench_training(args, args.data, tmp, train, val, test, threads)
        conv_cfg = make_config(epochs=args.conv_epochs, threads=threads)
        conv, conv_det = fit(conv_cfg, train, val)
        say(f"\n(conv model for scoring: {args.conv_epochs} epoch(s) in {conv.seconds:.1f}s)")
        dets = {"mlp": mlp_det, "conv": conv_det}
        res |= bench_scoring(args, dets, test)
        res |= bench_png(args, dets["conv"], test, tmp)  # the default model, as `anomalyvae train` makes it
        conv_det.save(tmp / "conv-model")
        res |= bench_startup(args, args.data, tmp, tmp / "conv-model")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    one, five, _ = os.getloadavg()
    say(f"\n# at end: {load_note()}; total {time.perf_counter() - t_start:.0f}s")
    res |= {"threads": threads, "load1_end": one}
    say(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()))


if __name__ == "__main__":
    main()
