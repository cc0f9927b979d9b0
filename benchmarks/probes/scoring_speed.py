"""Probe (issue 21): scoring speed of the default combined score from memory, old sum vs new, same model.

    python benchmarks/probes/scoring_speed.py   (ANOMALYVAE_DATA_DIR: the MNIST folder)
"""
import dataclasses, time, numpy as np, torch
from anomalyvae import AnomalyVAE
from anomalyvae.data.idx import read_idx
import os
R = os.environ.get("ANOMALYVAE_DATA_DIR", "data/mnist") + "/"
x = read_idx(R + "train-images-idx3-ubyte.gz"); y = read_idx(R + "train-labels-idx1-ubyte.gz")
xt = read_idx(R + "t10k-images-idx3-ubyte.gz")
torch.set_num_threads(2)
det = AnomalyVAE(epochs=1, random_state=0, threads=2).fit(x[y != 9])
print("bank", tuple(det.state_.hidden_codes.shape))
for combine in ("blur,knn,latent", "knn,hknn,latent"):
    det.config_ = dataclasses.replace(det.config_, combine=combine)
    det.anomaly_scores(xt[:1000], which=["combined"])  # warm: builds the indexes
    ts = []
    for _ in range(3):
        t = time.perf_counter(); det.anomaly_scores(xt, which=["combined"]); ts.append(time.perf_counter() - t)
    print(combine, f"{len(xt) / min(ts):,.0f} images/s (best of 3, 2 threads)")
