"""Probe (issue 21): sums of z-scored components on the combination cache, per digit, with digit 9's recall at the
threshold calibrated at 5 % FPR on the held-out normal images.

    python benchmarks/combination.py dump --dataset mnist --protocol loo --cache /tmp/combo
    python benchmarks/probes/sums.py /tmp/combo
"""
import sys, glob
import numpy as np
from sklearn.metrics import roc_auc_score
cands = ["hknn,latent", "blur,knn,latent", "blur,hknn,latent", "knn,hknn,latent", "blur,knn,hknn,latent", "hknn", "knn,latent", "blur,hknn", "hknn,latent,blur,peak"]
rows = {}
for f in sorted(glob.glob(sys.argv[1] + "/mnist-loo-*-0.npz")):
    d = np.load(f); y = d["test_y"]; c = int(f.split("-")[-2])
    z = lambda k: (d[f"test_{k}"] - d[f"val_{k}"].mean()) / d[f"val_{k}"].std()
    res = {}
    for cand in cands:
        s = sum(z(k) for k in cand.split(","))
        v = sum(((d[f"val_{k}"] - d[f"val_{k}"].mean()) / d[f"val_{k}"].std()) for k in cand.split(","))
        thr = np.quantile(v, 0.95)
        res[cand] = (roc_auc_score(y, s), (s[y] > thr).mean())
    for k in ("blur", "latent", "knn", "hknn"):
        res[k + "*"] = (roc_auc_score(y, d[f"test_{k}"]), 0)
    rows[c] = res
keys = list(rows[min(rows)])
print("cand".ljust(24), " ".join(f"{c:>6}" for c in rows), "  mean   min  rec9")
for k in keys:
    a = [rows[c][k][0] for c in rows]
    print(k.ljust(24), " ".join(f"{v:6.3f}" for v in a), f"{np.mean(a):6.3f} {np.min(a):5.3f}", f"{rows[9][k][1]:.2f}" if 9 in rows else "")
