"""Probe (issue 21): train the default model per left-out MNIST digit and compare kNN on mu / the hidden layer / the conv features, Euclidean, cosine and class-conditional Mahalanobis.

    python benchmarks/probes/representations.py mnist 9,1,4,7 base

Caches features in $PROBE_CACHE (default /tmp/probe) for hidden_variants.py and hidden_bank.py.
"""
import os
CACHE = os.environ.get("PROBE_CACHE", "/tmp/probe")
import sys, time, numpy as np, torch
from pathlib import Path
from sklearn.metrics import roc_auc_score
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from anomalyvae.data.idx import read_idx
from anomalyvae.config import make_config
from anomalyvae.pipeline.images import train_detector
sys.path.insert(0, str(Path(__file__).resolve().parent))
from knn_exact import knn  # noqa: E402
ds, digits, tag = sys.argv[1], [int(c) for c in sys.argv[2].split(",")], sys.argv[3]
over = dict(a.split("=") for a in sys.argv[4:])
over = {k: (int(v) if v.isdigit() else v) for k, v in over.items()}
dirs = {"mnist": os.environ.get("ANOMALYVAE_DATA_DIR", "data/mnist"), "fashion-mnist": "/usr/share/datasets/fashion-mnist"}
root = Path(dirs[ds])
def load(s):
    x = read_idx(next(root.glob(f"{s}-images*"))).astype(np.float32)[:, None] / 255
    return torch.from_numpy(x), read_idx(next(root.glob(f"{s}-labels*")))
xtr, ytr = load("train"); xte, yte = load("t10k")
torch.set_num_threads(2)
def maha(a, b, yb):
    """min over normal classes of the Mahalanobis distance with a tied covariance (Lee et al. 2018)."""
    a, b = a.double(), b.double()
    cls = np.unique(yb)
    means = torch.stack([b[torch.from_numpy(yb == c)].mean(0) for c in cls])
    cen = b - means[torch.from_numpy(np.searchsorted(cls, yb))]
    cov = cen.T @ cen / len(b) + 1e-4 * torch.eye(b.shape[1], dtype=b.dtype)
    p = torch.linalg.inv(cov)
    d = torch.stack([((a - m) @ p * (a - m)).sum(1) for m in means], 1)
    return d.min(1).values.numpy()
@torch.inference_mode()
def feats(model, x):
    out = {"mu": [], "hidden": [], "conv": []}
    for i in range(0, len(x), 2000):
        h = model.prepare(x[i:i+2000])
        for j, layer in enumerate(model.enc):
            h = layer(h)
            if isinstance(layer, torch.nn.Flatten):
                out["conv"].append(h.half())
        out["hidden"].append(h)
        out["mu"].append(model.fc_mu(h))
    return {k: torch.cat(v) for k, v in out.items()}
for c in digits:
    t0 = time.time()
    normal = ",".join(str(k) for k in range(10) if k != c)
    cfg = make_config(dataset=ds, data_dir=dirs[ds], normal=normal, seed=over.pop("seed", 0) if False else 0,
                      experiment="probe", **over)
    det, out = train_detector(cfg, out=Path(f"{CACHE}/m-{tag}-{c}"), log=lambda m: None)
    t1 = time.time()
    y = yte == c
    res = {s: roc_auc_score(y, v) for s, v in det.anomaly_scores(xte).items()}
    keep = ytr != c
    ftr, fte = feats(det.model_, xtr[keep]), feats(det.model_, xte)
    np.savez_compressed(f"{CACHE}/f-{tag}-{c}.npz", **{f"tr_{k}": v.float().numpy() for k, v in ftr.items() if k != "conv"},
                        **{f"te_{k}": v.float().numpy() for k, v in fte.items() if k != "conv"}, ytr=ytr[keep], yte=yte)
    for rep in ("mu", "hidden"):
        for k, cos in ((5, False), (5, True)):
            res[f"{rep}-{'cos' if cos else 'l2'}{k}"] = roc_auc_score(y, knn(fte[rep], ftr[rep], k, cos))
        res[f"{rep}-maha"] = roc_auc_score(y, maha(fte[rep], ftr[rep], ytr[keep]))
    res["conv-cos5"] = roc_auc_score(y, knn(fte["conv"], ftr["conv"], 5, True))
    print(f"digit {c} train {t1-t0:.0f}s probe {time.time()-t1:.0f}s", " ".join(f"{k}={v:.3f}" for k, v in res.items()), flush=True)
