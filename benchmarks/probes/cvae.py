"""Probe: a conditional VAE, q(z|x, y) and p(x|z, y), as a labelled anomaly detector on MNIST.

What it measures, per held-out digit c (normal = the other nine, trained with their labels; 10 % of the normal
training images held out for calibration, never an anomaly): test AUROC of digit c against the normal test
digits, and recall of digit c at the threshold that flags 5 % of the held-out normal images. Scores (higher =
more anomalous), each computed under the normal class that explains the input best:

  recon_min   min over classes y of -log p(x | z = mu(x, y), y)            (reconstruction error, Bernoulli nats)
  elbo_min    min over classes of the class-conditional negative ELBO       (recon at z = mu, plus the closed-form KL)
  elbo_lse    -logsumexp_y(-negELBO_y + log p(y)), p(y) the training class frequencies: a bound on -log p(x)
  knn_mu      cosine kNN (k=5) distance of mu(x, y*) to the normal training codes of class y* (y* = argmin ELBO)
  knn_mu_all  the same against every class's codes
  hknn        cosine kNN on the encoder's last hidden layer h (the conv trunk, before y enters)
  hknn_cls    the same against the training images of class y* only
  maha_h      min over classes of the Mahalanobis distance of h to the class mean, one shared covariance
              (Lee et al. 2018)
  knn_mu_head, hknn_head   knn_mu and hknn against the codes of the head's class (with --head)
  head        entropy of a linear class head on that hidden layer (only with --head W > 0: the head's
              cross-entropy, weight W, is trained with the ELBO, as the library's --use-labels head on mu)
  pixel_knn   cosine kNN (k=5) on raw pixels (the baseline, in the same run)
  a+b...      sums of scores each standardised by its mean and std on the held-out normal images
  lib_*       with --library: anomalyvae.AnomalyVAE(use_labels=True) fitted on the same training images
              (it holds out its own 10 % of them) and scored on the same held-out and test images

Also per digit: training seconds and scoring throughput (test images/s from memory, one thread) of each CVAE
score against the plain reconstruction score (one encoder and one decoder pass, the cost of the library's
`recon`); `elbo_top2` decodes only the two classes the head (or, without one, the KL term) ranks first.

The architecture is the library's conv model (anomalyvae/model.py ConvVAE: 1->16->32 stride-2 convolutions,
dense 256, latent 16); the one-hot y is concatenated after the convolutions (encoder) and to z (decoder), so
scoring under all classes runs the convolutions once and the decoder once per class. Training: Adam 1e-3,
batch 128, auto_epochs (about 2,300 steps), one thread.

Reproduce (each writes/extends its csv and rewrites the md beside it):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probes/cvae.py --digits 9 --head 10 --library \
        --out benchmarks/results/cvae-digit9.csv
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probes/cvae.py --digits 9,4,7,1 --head 10 \
        --out benchmarks/results/cvae-loo.csv
"""
from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from anomalyvae.config import auto_epochs  # noqa: E402
from anomalyvae.idx import read_idx  # noqa: E402

DIRS = {"mnist": ROOT / "data/mnist", "fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}


def load(ds: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    root = DIRS[ds]
    x = read_idx(next(root.glob(f"{split}-images*")))
    y = read_idx(next(root.glob(f"{split}-labels*")))
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


class CVAE(nn.Module):
    """The library's conv VAE with the one-hot class y concatenated to the conv features and to z."""

    def __init__(self, n_classes: int, width: int = 16, latent: int = 16, hidden: int = 256, head: bool = False,
                 conditional: bool = True):
        super().__init__()
        self.k, self.cond = n_classes, float(conditional)  # conditional=False: y is fed as zeros (a plain VAE)
        self.conv = nn.Sequential(nn.Conv2d(1, width, 4, 2, 1), nn.ReLU(), nn.Conv2d(width, 2 * width, 4, 2, 1),
                                  nn.ReLU(), nn.Flatten(), nn.Linear(2 * width * 49, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden + n_classes, latent)
        self.fc_logvar = nn.Linear(hidden + n_classes, latent)
        self.fc_dec = nn.Sequential(nn.Linear(latent + n_classes, hidden), nn.ReLU(), nn.Linear(hidden, 2 * width * 49))
        self.dec = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(width, 1, 4, 2, 1))
        self.width = width
        self.head = nn.Linear(hidden, n_classes) if head else None

    def encode(self, h: torch.Tensor, y1: torch.Tensor):
        hy = torch.cat([h, y1 * self.cond], 1)
        return self.fc_mu(hy), self.fc_logvar(hy)

    def decode(self, z: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        return self.dec(self.fc_dec(torch.cat([z, y1 * self.cond], 1)).view(-1, 2 * self.width, 7, 7))


def kl(mu, logvar):
    """KL(N(mu, sigma^2) || N(0, I)) per sample (Kingma & Welling 2014, appendix B)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def bce(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def train(model: CVAE, x: torch.Tensor, yi: torch.Tensor, head_w: float, seed: int, epochs: int | None = None) -> float:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs = epochs or auto_epochs(len(x), 128)
    t0 = time.perf_counter()
    for ep in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            xb = x[idx].float().div_(255).unsqueeze(1)
            y1 = F.one_hot(yi[idx], model.k).float()
            h = model.conv(xb)
            mu, logvar = model.encode(h, y1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            loss = bce(model.decode(z, y1), xb) + kl(mu, logvar)
            if model.head is not None and head_w > 0:
                loss = loss + head_w * F.cross_entropy(model.head(h), yi[idx], reduction="none")
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
        print(f"    epoch {ep + 1}/{epochs} loss {loss.mean().item():.1f} {time.perf_counter() - t0:.0f}s", flush=True)
    return time.perf_counter() - t0


@torch.inference_mode()
def per_class(model: CVAE, x: torch.Tensor, classes: int | None = None, bs: int = 1000, decode: bool = True):
    """h (N, H), and per class y: recon NLL (N, K), KL (N, K), mu (N, K, d), under z = mu (deterministic).
    `classes`: a (N, m) index tensor of the classes to decode per input (None: all); others are +inf."""
    hs, recs, kls, mus, heads = [], [], [], [], []
    eye = torch.eye(model.k)
    for i in range(0, len(x), bs):
        xb = x[i:i + bs].float().div_(255).unsqueeze(1)
        n = len(xb)
        h = model.conv(xb)
        hk = h.repeat_interleave(model.k, 0)  # (n*K, H): row j*K + k is input j under class k
        y1 = eye.repeat(n, 1)
        mu, logvar = model.encode(hk, y1)
        klk = kl(mu, logvar).view(n, model.k)
        if model.head is not None:
            lg = model.head(h)
            heads.append(lg)
        if not decode:
            rec = klk
        elif classes is None:
            rec = bce(model.decode(mu, y1), xb.repeat_interleave(model.k, 0)).view(n, model.k)
        else:
            if model.head is not None:
                pick = lg.topk(classes, 1).indices
            else:
                pick = (-klk).topk(classes, 1).indices
            rows = (torch.arange(n)[:, None] * model.k + pick).flatten()
            rec = torch.full((n, model.k), math.inf)
            rec.scatter_(1, pick, bce(model.decode(mu[rows], y1[rows]), xb.repeat_interleave(classes, 0)).view(n, classes))
        hs.append(h); recs.append(rec); kls.append(klk); mus.append(mu.view(n, model.k, -1))
    out = dict(h=torch.cat(hs), rec=torch.cat(recs), kl=torch.cat(kls), mu=torch.cat(mus))
    if heads:
        out["logits"] = torch.cat(heads)
    return out


def cos_knn(q: torch.Tensor, bank: torch.Tensor, k: int = 5, q_lab=None, bank_lab=None, bs: int = 1000) -> torch.Tensor:
    """Mean cosine distance to the k nearest bank rows; with labels, only bank rows of the query's label."""
    qn, bn = F.normalize(q.float(), dim=1), F.normalize(bank.float(), dim=1)
    out = []
    for i in range(0, len(qn), bs):
        s = qn[i:i + bs] @ bn.T
        if q_lab is not None:
            s = s.masked_fill(q_lab[i:i + bs, None] != bank_lab[None, :], -2.0)
        out.append(1 - s.topk(k, 1).values.mean(1))
    return torch.cat(out)


def fit_maha(feat: torch.Tensor, y: torch.Tensor, k: int) -> dict:
    """Class means and one shared covariance (Lee et al. 2018, 'A simple unified framework for detecting OOD')."""
    feat = feat.double()
    means = torch.stack([feat[y == j].mean(0) for j in range(k)])
    centred = feat - means[y]
    cov = centred.T @ centred / len(feat) + 1e-6 * torch.eye(feat.shape[1], dtype=torch.float64)
    return {"means": means, "prec": torch.linalg.inv(cov)}


def maha_min(feat: torch.Tensor, m: dict) -> torch.Tensor:
    """min over classes of the Mahalanobis distance^2 to the class mean (shared covariance)."""
    d = feat.double()[:, None, :] - m["means"][None]  # (N, K, D)
    return ((d @ m["prec"]) * d).sum(-1).min(1).values


def scores_of(model: CVAE, x: torch.Tensor, bank: dict, log_prior: torch.Tensor) -> dict[str, np.ndarray]:
    r = per_class(model, x)
    nelbo = r["rec"] + r["kl"]
    best = nelbo.argmin(1)
    mu_best = r["mu"][torch.arange(len(x)), best]
    s = {
        "recon_min": r["rec"].min(1).values,
        "elbo_min": nelbo.min(1).values,
        "elbo_lse": -torch.logsumexp(-nelbo + log_prior, 1),
        "knn_mu": cos_knn(mu_best, bank["mu"], q_lab=best, bank_lab=bank["y"]),
        "knn_mu_all": cos_knn(mu_best, bank["mu"]),
        "hknn": cos_knn(r["h"], bank["h"]),
        "hknn_cls": cos_knn(r["h"], bank["h"], q_lab=best, bank_lab=bank["y"]),
        "maha_h": maha_min(r["h"], bank["maha_h"]),
    }
    if "logits" in r:
        p = r["logits"].softmax(1)
        s["head"] = -(p * p.clamp_min(1e-12).log()).sum(1)
        yh = p.argmax(1)  # the head's class: the codes of that class alone
        s["knn_mu_head"] = cos_knn(r["mu"][torch.arange(len(x)), yh], bank["mu"], q_lab=yh, bank_lab=bank["y"])
        s["hknn_head"] = cos_knn(r["h"], bank["h"], q_lab=yh, bank_lab=bank["y"])
    return {k: v.double().numpy() for k, v in s.items()}


@torch.inference_mode()
def head_scores(model: CVAE, x: torch.Tensor, bank: dict, bs: int = 1000, k: int = 5) -> dict[str, torch.Tensor]:
    """The decoder-free path: trunk, head entropy, and mu under the head's class with its cosine kNN against
    that class's training codes alone (queries grouped by class: each bank is a ninth of the whole)."""
    if "by_class" not in bank:
        bn = F.normalize(bank["mu"].float(), dim=1)
        bank["by_class"] = [bn[bank["y"] == j] for j in range(model.k)]
    ent, knn = [], []
    for i in range(0, len(x), bs):
        h = model.conv(x[i:i + bs].float().div_(255).unsqueeze(1))
        p = model.head(h).softmax(1)
        yh = p.argmax(1)
        mu = F.normalize(model.encode(h, F.one_hot(yh, model.k).float())[0], dim=1)
        d = torch.empty(len(h))
        for j in yh.unique().tolist():
            sel = yh == j
            d[sel] = 1 - (mu[sel] @ bank["by_class"][j].T).topk(k, 1).values.mean(1)
        ent.append(-(p * p.clamp_min(1e-12).log()).sum(1))
        knn.append(d)
    return {"head": torch.cat(ent), "knn_mu_head": torch.cat(knn)}


def throughput(fn, n: int, reps: int = 2) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return reps * n / (time.perf_counter() - t0)


def recall_at(val: np.ndarray, anom: np.ndarray, fpr: float = 0.05) -> float:
    return float((anom > np.quantile(val, 1 - fpr)).mean())


SUMMARY = ["recon_min", "elbo_min", "elbo_lse", "elbo_top2", "knn_mu", "knn_mu_head", "hknn", "hknn_cls", "maha_h",
           "head", "head+knn_mu_head", "knn_mu+head", "knn_mu+head+knn_mu_head", "hknn+head", "pixel_knn",
           "lib_combined", "lib_class", "knn_mu+head+lib_class", "head+lib_combined"]


def summarise(paths: list[str], md: str) -> None:
    """One markdown table: each SUMMARY score's AUROC (recall at 5 % FPR) per anomaly class, and the mean."""
    rows = [r for p in paths for r in csv.DictReader(open(p)) if r["auroc"]]
    for r in rows:
        r["key"] = (r["dataset"], r["conditional"], r["head_w"])
    lines = [f"# CVAE probe: test AUROC (recall at 5 % FPR on held-out normal), `{' '.join(sys.argv)}`", ""]
    for key in dict.fromkeys(r["key"] for r in rows):
        sub = [r for r in rows if r["key"] == key]
        digits = list(dict.fromkeys(r["anomaly"] for r in sub))
        lines += [f"## {key[0]}, conditional={key[1]}, head weight {key[2]}", "",
                  "| score | " + " | ".join(digits) + " | mean | min |", "|---" * (len(digits) + 3) + "|"]
        for name in SUMMARY:
            got = {r["anomaly"]: r for r in sub if r["score"] == name}
            if not got:
                continue
            cells = [f"{float(got[d]['auroc']):.3f} ({float(got[d]['recall_at_5pct_fpr']):.2f})" if d in got else ""
                     for d in digits]
            au = [float(got[d]["auroc"]) for d in digits if d in got]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean(au):.3f} | {min(au):.3f} |")
        lines.append("")
    Path(md).write_text("\n".join(lines))


def main():
    if sys.argv[1:2] == ["--summarise"]:
        return summarise(sys.argv[2:-1], sys.argv[-1])
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--digits", default="9")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head", type=float, default=0.0, help="cross-entropy weight of a class head on h (0: none)")
    ap.add_argument("--library", action="store_true", help="also fit anomalyvae.AnomalyVAE(use_labels=True)")
    ap.add_argument("--no-pixel", action="store_true")
    ap.add_argument("--no-speed", action="store_true", help="skip the throughput measurements")
    ap.add_argument("--plain", action="store_true", help="y fed as zeros: the same network unconditioned")
    ap.add_argument("--limit", type=int, default=None, help="smoke test: this many training images, 1 epoch")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    xtr_all, ytr_all = load(a.dataset, "train")
    xte, yte = load(a.dataset, "t10k")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    f = out.open("a", newline="")
    w = csv.writer(f)
    if new:
        w.writerow(["dataset", "anomaly", "seed", "head_w", "conditional", "score", "auroc", "recall_at_5pct_fpr", "train_s", "images_per_s"])
    for c in [int(d) for d in a.digits.split(",")]:
        print(f"anomaly class {c}", flush=True)
        g = torch.Generator().manual_seed(a.seed)
        keep = torch.nonzero(ytr_all != c).flatten()
        keep = keep[torch.randperm(len(keep), generator=g)]
        n_val = len(keep) // 10
        val_idx, tr_idx = keep[:n_val], keep[n_val:]
        if a.limit:
            val_idx, tr_idx = val_idx[:a.limit // 10], tr_idx[:a.limit]
        classes = sorted(set(ytr_all[tr_idx].tolist()))
        cls_t = torch.tensor(classes)
        xtr, yi = xtr_all[tr_idx], torch.searchsorted(cls_t, ytr_all[tr_idx])
        xval = xtr_all[val_idx]
        lab = (yte == c).numpy()
        rows = []

        def emit(name, sv, st, train_s="", ips=""):
            au = roc_auc_score(lab, st)
            rc = recall_at(sv, st[lab])
            rows.append((name, au, rc))
            w.writerow([a.dataset, c, a.seed, a.head, int(not a.plain), name, f"{au:.4f}", f"{rc:.4f}", train_s,
                        f"{ips:.0f}" if ips != "" else ""])
            f.flush()
            print(f"  {name:32s} auroc {au:.4f} recall@5% {rc:.3f} {train_s} {ips if ips == '' else round(ips)}", flush=True)

        torch.manual_seed(a.seed)
        model = CVAE(len(classes), head=a.head > 0, conditional=not a.plain)
        train_s = train(model, xtr, yi, a.head, a.seed, 1 if a.limit else None)
        model.eval()
        with torch.inference_mode():
            rb = per_class(model, xtr, decode=False)  # the bank needs mu and h only
            bank = {"mu": rb["mu"][torch.arange(len(xtr)), yi], "y": yi, "h": rb["h"]}
            bank["maha_h"] = fit_maha(rb["h"], yi, len(classes))
        log_prior = torch.log(torch.bincount(yi, minlength=len(classes)).double() / len(yi)).float()
        sv, st = scores_of(model, xval, bank, log_prior), scores_of(model, xte, bank, log_prior)
        # throughput on the test images, same model, same thread count
        x1 = xte

        @torch.inference_mode()
        def plain_recon():  # one encoder and one decoder pass (under class 0): the library's recon costs this
            for i in range(0, len(x1), 1000):
                xb = x1[i:i + 1000].float().div_(255).unsqueeze(1)
                y1 = F.one_hot(torch.zeros(len(xb), dtype=torch.long), model.k).float()
                mu, _ = model.encode(model.conv(xb), y1)
                bce(model.decode(mu, y1), xb)

        ips = {} if a.no_speed else {"recon_1class": throughput(plain_recon, len(x1)),
               "elbo_min": throughput(lambda: per_class(model, x1), len(x1)),
               "elbo_top2": throughput(lambda: per_class(model, x1, classes=2), len(x1))}
        if not a.no_speed:
            ips["elbo_min+knn_mu"] = throughput(lambda: scores_of(model, x1, bank, log_prior), len(x1), reps=1)
            if model.head is not None:
                ips["head+knn_mu_head"] = throughput(lambda: head_scores(model, x1, bank), len(x1))
                hs = head_scores(model, x1, bank)
                print("  decoder-free path agrees:", {k: float(np.abs(hs[k].double().numpy() - st[k]).max()) for k in hs})
        print(f"  throughput {ips}", flush=True)
        # top-2 decoding: AUROC of elbo_min when only two classes are decoded
        r2v, r2t = per_class(model, xval, classes=2), per_class(model, xte, classes=2)
        e2v, e2t = (r2v["rec"] + r2v["kl"]).min(1).values.double().numpy(), (r2t["rec"] + r2t["kl"]).min(1).values.double().numpy()
        for name in sv:
            emit(name, sv[name], st[name], f"{train_s:.0f}", ips.get(name, ""))
        emit("elbo_top2", e2v, e2t, f"{train_s:.0f}", ips.get("elbo_top2", ""))
        if "head+knn_mu_head" in ips:
            w.writerow([a.dataset, c, a.seed, a.head, int(not a.plain), "head+knn_mu_head(throughput only)", "", "", "", f"{ips['head+knn_mu_head']:.0f}"])
        if ips:
            w.writerow([a.dataset, c, a.seed, a.head, int(not a.plain), "recon_1class(throughput only)", "", "", "", f"{ips['recon_1class']:.0f}"])
        if not a.no_pixel:
            t0 = time.perf_counter()
            px_bank = xtr.flatten(1).float()
            pv, pt = cos_knn(xval.flatten(1).float(), px_bank), cos_knn(xte.flatten(1).float(), px_bank)
            sv["pixel_knn"], st["pixel_knn"] = pv.double().numpy(), pt.double().numpy()
            emit("pixel_knn", sv["pixel_knn"], st["pixel_knn"], "", len(xte) / (time.perf_counter() - t0) * 2)
        if a.library:
            from anomalyvae import AnomalyVAE
            t0 = time.perf_counter()
            est = AnomalyVAE(use_labels=True, random_state=a.seed, threads=torch.get_num_threads(), epochs=1 if a.limit else None)
            est.fit(xtr.numpy(), torch.tensor(classes)[yi].numpy())
            lib_s = time.perf_counter() - t0
            lv, lt = est.anomaly_scores(xval.numpy()), est.anomaly_scores(xte.numpy())
            t0 = time.perf_counter(); est.anomaly_scores(xte.numpy(), which=["combined"]); lib_ips = len(xte) / (time.perf_counter() - t0)
            t0 = time.perf_counter(); est.anomaly_scores(xte.numpy(), which=["recon"]); lib_rips = len(xte) / (time.perf_counter() - t0)
            for k in lt:
                sv[f"lib_{k}"], st[f"lib_{k}"] = lv[k], lt[k]
                emit(f"lib_{k}", lv[k], lt[k], f"{lib_s:.0f}",
                     lib_ips if k == "combined" else (lib_rips if k == "recon" else ""))
            # the estimator's own threshold (calibrated on its own held-out 10 %): recall of the anomaly
            pred = est.predict(xte.numpy())
            print(f"  lib predict(): recall {(pred[lab] == -1).mean():.3f}, fpr on normal test {(pred[~lab] == -1).mean():.3f}")
        # standardised sums (mean / std on the held-out normal images)
        z = {k: ((sv[k] - sv[k].mean()) / sv[k].std(), (st[k] - sv[k].mean()) / sv[k].std()) for k in sv}
        base = [k for k in z if k not in ("knn_mu_all",) and not k.startswith("lib_") or k in ("lib_combined", "lib_class")]
        for r in (2, 3):
            for combo in itertools.combinations(base, r):
                emit("+".join(combo), sum(z[k][0] for k in combo), sum(z[k][1] for k in combo))
        best = sorted(rows, key=lambda t: -t[1])[:12]
        print("  best:", ", ".join(f"{n} {au:.4f}/{rc:.2f}" for n, au, rc in best), flush=True)
    f.close()


if __name__ == "__main__":
    main()
