"""Probe (issue 21): the standardised hidden layer's kNN: dead-unit handling, k, a smaller random bank.

    python benchmarks/probes/hidden_bank.py 9,1,4,7
"""
import os
CACHE = os.environ.get("PROBE_CACHE", "/tmp/probe")
import sys, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from knn_exact import knn
from sklearn.metrics import roc_auc_score
torch.set_num_threads(1)
rows = []
for c in [int(a) for a in sys.argv[1].split(",")]:
    f = np.load(f"{CACHE}/f-base-{c}.npz")
    lab = f["yte"] == c
    res = {}
    tr, te = torch.from_numpy(f["tr_hidden"]), torch.from_numpy(f["te_hidden"])
    m, s = tr.mean(0), tr.std(0)
    for floor in ("eps", "med"):
        live = s > 1e-3
        sf = torch.where(live, s if floor == "eps" else s.clamp_min(s[live].median()), torch.tensor(float("inf")))
        trw, tew = (tr - m) / sf, (te - m) / sf
        for k in (1, 5, 10):
            res[f"{floor}-k{k}"] = roc_auc_score(lab, knn(tew, trw, k, False))
    sf = torch.where(s > 1e-3, s, torch.tensor(float("inf")))
    trw, tew = (tr - m) / sf, (te - m) / sf
    for n in (8192, 16384):
        idx = torch.randperm(len(trw), generator=torch.Generator().manual_seed(0))[:n]
        res[f"bank{n}"] = roc_auc_score(lab, knn(tew, trw[idx], 5, False))
    res["raw-l2"] = roc_auc_score(lab, knn(te, tr, 5, False))
    rows.append(list(res.values()))
    print(c, " ".join(f"{k}={v:.3f}" for k, v in res.items()), flush=True)
print("mean", " ".join(f"{v:.3f}" for v in np.mean(rows, 0)))
