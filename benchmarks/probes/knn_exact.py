"""Exact kNN distances in chunks (the probes' shared helper).
"""
import os
import torch
def knn(a, b, k, cos):
    a, b = a.float(), b.float()
    if cos:
        a = torch.nn.functional.normalize(a, dim=1); b = torch.nn.functional.normalize(b, dim=1)
    out, bn = [], (b * b).sum(1)
    for i in range(0, len(a), 1000):
        q = a[i:i+1000]
        d = (q * q).sum(1, keepdim=True) - 2 * q @ b.T + bn
        out.append(d.clamp_min(0).topk(k, largest=False).values.sqrt().mean(1))
    return torch.cat(out).numpy()
