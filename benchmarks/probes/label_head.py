"""Probe (issue 21): the default conv VAE trained with a linear head on mu (cross-entropy weight W, E epochs); label-aware scores.

    python benchmarks/probes/label_head.py mnist 9,1 10 6
"""
import os
import sys, time, math, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
from sklearn.metrics import roc_auc_score
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from anomalyvae.data.idx import read_idx
from anomalyvae.config import make_config
from anomalyvae.vae.model import build_model, elbo_terms
ds, digits, weight = sys.argv[1], [int(c) for c in sys.argv[2].split(",")], float(sys.argv[3])
epochs = int(sys.argv[4]) if len(sys.argv) > 4 else 6
dirs = {"mnist": os.environ.get("ANOMALYVAE_DATA_DIR", "data/mnist"), "fashion-mnist": "/usr/share/datasets/fashion-mnist"}
root = Path(dirs[ds])
def load(s):
    x = read_idx(next(root.glob(f"{s}-images*"))).astype(np.float32)[:, None] / 255
    return torch.from_numpy(x), torch.from_numpy(read_idx(next(root.glob(f"{s}-labels*"))).astype(np.int64))
xtr, ytr = load("train"); xte, yte = load("t10k")
torch.set_num_threads(2)
from knn_exact import knn
for c in digits:
    torch.manual_seed(0)
    keep = ytr != c
    x, y = xtr[keep], ytr[keep]
    classes = torch.unique(y)
    yi = torch.searchsorted(classes, y)
    cfg = make_config(dataset=ds, normal="0", experiment="p")
    model = build_model(cfg, (1, 28, 28))
    head = torch.nn.Linear(cfg.latent_dim, len(classes))
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    t0 = time.time()
    for ep in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i+128]
            xb = x[idx]
            out, mu, logvar = model(xb)
            rec = model.nll(out, xb); kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
            ce = F.cross_entropy(head(mu), yi[idx], reduction="none")
            loss = (rec + kl + weight * ce).mean()
            opt.zero_grad(); loss.backward(); opt.step()
        print(f"  epoch {ep+1} loss {loss.item():.1f} ce {ce.mean().item():.3f} {time.time()-t0:.0f}s", flush=True)
    model.eval()
    with torch.inference_mode():
        def enc(a):
            mus, hs, recs = [], [], []
            for i in range(0, len(a), 2000):
                h = model.enc(a[i:i+2000]); m = model.fc_mu(h)
                mus.append(m); hs.append(h)
                recs.append(model.nll(model.decode(m), a[i:i+2000]))
            return torch.cat(mus), torch.cat(hs), torch.cat(recs)
        mtr, htr, _ = enc(x); mte, hte, rte = enc(xte)
        logits = head(mte)
    lab = (yte == c).numpy()
    res = {}
    p = logits.softmax(1)
    res["msp"] = roc_auc_score(lab, -p.max(1).values.numpy())
    res["energy"] = roc_auc_score(lab, -torch.logsumexp(logits, 1).numpy())
    res["entropy"] = roc_auc_score(lab, -(p * p.clamp_min(1e-12).log()).sum(1).numpy())
    # class-conditional Gaussians on mu (tied covariance), min Mahalanobis
    means = torch.stack([mtr[yi == k].mean(0) for k in range(len(classes))]).double()
    cen = mtr.double() - means[yi]
    cov = cen.T @ cen / len(cen) + 1e-4 * torch.eye(mtr.shape[1], dtype=torch.float64)
    prec = torch.linalg.inv(cov)
    d = torch.stack([(((mte.double() - m) @ prec) * (mte.double() - m)).sum(1) for m in means], 1)
    res["maha"] = roc_auc_score(lab, d.min(1).values.numpy())
    # per-class own covariance (QDA-like): -log max_k N(mu | m_k, S_k)
    nll = []
    for k in range(len(classes)):
        mk = mtr[yi == k].double(); ck = torch.cov(mk.T) + 1e-3 * torch.eye(mk.shape[1], dtype=torch.float64)
        dist = torch.distributions.MultivariateNormal(mk.mean(0), ck)
        nll.append(-dist.log_prob(mte.double()))
    res["qda"] = roc_auc_score(lab, torch.stack(nll, 1).min(1).values.numpy())
    res["mu-l25"] = roc_auc_score(lab, knn(mte, mtr, 5, False))
    res["mu-cos5"] = roc_auc_score(lab, knn(mte, mtr, 5, True))
    res["hid-cos5"] = roc_auc_score(lab, knn(hte, htr, 5, True))
    res["recon"] = roc_auc_score(lab, rte.numpy())
    acc = (logits.argmax(1) == torch.searchsorted(classes, yte.clamp(max=classes.max()))).float()[~torch.from_numpy(lab)].mean()
    print(f"digit {c} w={weight} train {time.time()-t0:.0f}s acc {acc:.3f}", " ".join(f"{k}={v:.3f}" for k, v in res.items()), flush=True)
