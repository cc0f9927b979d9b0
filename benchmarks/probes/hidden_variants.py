"""Probe (issue 21): kNN variants on the cached mu / hidden layers (standardised, centred, cosine, k).

    python benchmarks/probes/hidden_variants.py 9,1,4,7
"""
import os
CACHE = os.environ.get("PROBE_CACHE", "/tmp/probe")
import sys, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from knn_exact import knn
from sklearn.metrics import roc_auc_score
torch.set_num_threads(1)
for c in [int(a) for a in sys.argv[1].split(",")]:
    f = np.load(f"{CACHE}/f-base-{c}.npz")
    lab = f["yte"] == c
    res = {}
    for rep in ("mu", "hidden"):
        tr, te = torch.from_numpy(f[f"tr_{rep}"]), torch.from_numpy(f[f"te_{rep}"])
        m, s = tr.mean(0), tr.std(0) + 1e-6
        trw, tew = (tr - m) / s, (te - m) / s
        res[f"{rep}-white-l2"] = roc_auc_score(lab, knn(tew, trw, 5, False))
        res[f"{rep}-white-cos"] = roc_auc_score(lab, knn(tew, trw, 5, True))
        res[f"{rep}-cent-cos"] = roc_auc_score(lab, knn(te - m, tr - m, 5, True))
        for k in (1, 20):
            res[f"{rep}-cos{k}"] = roc_auc_score(lab, knn(te, tr, k, True))
    print(c, " ".join(f"{k}={v:.3f}" for k, v in res.items()), flush=True)
