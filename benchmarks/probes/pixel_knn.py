"""Probe (issue 21): raw-pixel kNN on MNIST / Fashion-MNIST leave-one-out, Euclidean and cosine, k = 1 and 5.

    python benchmarks/probes/pixel_knn.py mnist
"""
import os
import sys, time, numpy as np, torch
from pathlib import Path
from sklearn.metrics import roc_auc_score
from anomalyvae.data.idx import read_idx
ds = sys.argv[1]
root = Path({"mnist": os.environ.get("ANOMALYVAE_DATA_DIR", "data/mnist"), "fashion": "/usr/share/datasets/fashion-mnist"}[ds])
def load(s):
    x = read_idx(next(root.glob(f"{s}-images*"))).reshape(-1, 784).astype(np.float32) / 255
    y = read_idx(next(root.glob(f"{s}-labels*")))
    return torch.from_numpy(x), y
xtr, ytr = load("train"); xte, yte = load("t10k")
torch.set_num_threads(2)
def knn(a, b, k, cos):
    if cos:
        a = torch.nn.functional.normalize(a, dim=1); b = torch.nn.functional.normalize(b, dim=1)
    out = []
    bn = (b * b).sum(1)
    for i in range(0, len(a), 1000):
        q = a[i:i+1000]
        d = (q * q).sum(1, keepdim=True) - 2 * q @ b.T + bn
        out.append(d.clamp_min(0).topk(k, largest=False).values.sqrt().mean(1))
    return torch.cat(out).numpy()
res = {}
for c in range(10):
    t = time.time()
    tr = xtr[ytr != c]
    row = []
    for k, cos in [(1, False), (5, False), (1, True), (5, True)]:
        s = knn(xte, tr, k, cos)
        row.append(roc_auc_score(yte == c, s))
    print(c, " ".join(f"{v:.3f}" for v in row), f"{time.time()-t:.0f}s", flush=True)
    res[c] = row
m = np.mean(list(res.values()), 0)
print("mean", " ".join(f"{v:.3f}" for v in m))
