"""The knn score's nearest-neighbour search: the exact search beside faster candidates, on real codes (issue 15).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/knn_search.py               # MNIST 0-8 (9 held out), Fashion class 0
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/knn_search.py --cache /tmp/knn-models   # reuse trained models

Each case trains the default conv model through the library (AnomalyVAE.fit_splits on load_train's split, as
`anomalyvae train` does), then on its test split, in one process and one thread count:
- codes/s of each search alone over the test codes (median of --reps), paired with the exact search's and with
  the `recon` score's throughput (network only) measured in the same run;
- img/s of the default score (`combined`) end to end with each search swapped into scoring.knn_distance;
- AUROC of `knn` and of `combined` against the exact search (knn's normalisation re-fitted on the held-out
  normal codes for every candidate, as fit_splits does), and the build time of each index.
Candidates: the exact cdist + topk (the reference); anomalyvae.detectors.knn.KnnIndex (the recommendation: faiss IVF
above knn.IVF_MIN_CODES codes); exact kernels: one addmm + topk on squared distances, addmm + topk over group
minima; faiss's flat, IVF and HNSW indexes (if faiss-cpu is installed); an exact search over a compressed set of
codes: k-means centroids (MiniBatchKMeans), a random subset, a greedy k-centre coreset; and no search at all
(knn = 0), the ceiling that the rest of the default score leaves. Rounding is measured against float64.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalyvae.detectors import knn, scoring, whole  # noqa: E402
from anomalyvae.data.classes import parse_classes  # noqa: E402
from anomalyvae.config import make_config  # noqa: E402
from anomalyvae.data.datasets import load_test, load_train  # noqa: E402
from anomalyvae.estimator import AnomalyVAE  # noqa: E402
from anomalyvae.evaluation.metrics import ranking  # noqa: E402
from speed import timed  # noqa: E402  (benchmarks/ is the script's folder, on sys.path)

Search = Callable[[torch.Tensor], torch.Tensor]  # (Q, d) codes -> (Q,) mean distance to the k nearest
KNN_NOW = knn.exact_knn  # the exact search the knn score used before knn.KnnIndex


def say(*a) -> None:
    print(*a, flush=True)


# -- the exact kernels ---------------------------------------------------------------------------------------
def exact_cdist(codes: torch.Tensor, k: int) -> Search:
    """The exact search (cdist + topk), the reference."""
    return lambda q: KNN_NOW(q, codes, k)


def exact_addmm(codes: torch.Tensor, k: int, chunk: int = 1024) -> Search:
    """||q - c||^2 = ||q||^2 + ||c||^2 - 2 q.c: one addmm per chunk, topk on the squared distances (||q||^2 is
    the same for a whole row, so it is added to the k winners only), sqrt of k values per query."""
    k = min(k, len(codes))
    ct = codes.t().contiguous()
    c2 = codes.pow(2).sum(1)

    def search(q: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, len(q), chunk):
            qs = q[s:s + chunk]
            part = torch.addmm(c2, qs, ct, alpha=-2).topk(k, dim=1, largest=False).values
            out.append((part + qs.pow(2).sum(1, keepdim=True)).clamp_min(0).sqrt().mean(1))
        return torch.cat(out)
    return search


def exact_direct(codes: torch.Tensor, k: int, chunk: int = 64) -> Search:
    """Differences, not a matmul (no cancellation): the float64 yardstick for rounding."""
    k = min(k, len(codes))
    return lambda q: torch.cat([torch.cdist(q[s:s + chunk], codes, compute_mode="donot_use_mm_for_euclid_dist")
                                .topk(k, dim=1, largest=False).values.mean(1) for s in range(0, len(q), chunk)])


def exact_grouped(codes: torch.Tensor, k: int, chunk: int = 32, group: int = 64) -> Search:
    """addmm, then topk over group minima: the k nearest lie in the k groups with the smallest minima (any
    other group's members each have k smaller values before them), so only those k groups are ranked."""
    n, d = codes.shape
    pad = (-n) % group
    ct = torch.cat([codes, codes.new_zeros(pad, d)]).t().contiguous()
    c2 = torch.cat([codes.pow(2).sum(1), codes.new_full((pad,), float("inf"))])  # padding is never nearest
    groups, k = (n + pad) // group, min(k, n)

    def search(q: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, len(q), chunk):
            qs = q[s:s + chunk]
            d2 = torch.addmm(c2, qs, ct, alpha=-2).view(len(qs), groups, group)
            best = d2.amin(2).topk(min(k, groups), dim=1, largest=False).indices
            cand = d2.gather(1, best.unsqueeze(2).expand(-1, -1, group)).flatten(1)
            part = cand.topk(k, dim=1, largest=False).values
            out.append((part + qs.pow(2).sum(1, keepdim=True)).clamp_min(0).sqrt().mean(1))
        return torch.cat(out)
    return search


# -- compressed sets of codes (searched exactly with addmm) ----------------------------------------------------
def kmeans_centres(codes: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(n, random_state=seed, batch_size=4096, n_init=1, max_iter=50).fit(codes.numpy())
    return torch.from_numpy(km.cluster_centers_).float()


def random_subset(codes: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    return codes[torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))[:n]]


def kcentre_coreset(codes: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Greedy k-centre (as PatchCore's coreset): each new member is the code farthest from those chosen."""
    first = int(torch.randint(len(codes), (1,), generator=torch.Generator().manual_seed(seed)))
    chosen = [first]
    dist = (codes - codes[first]).pow(2).sum(1)
    for _ in range(n - 1):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, (codes - codes[nxt]).pow(2).sum(1))
    return codes[chosen]


# -- faiss ---------------------------------------------------------------------------------------------------
def faiss_search(index, k: int) -> Search:
    def search(q: torch.Tensor) -> torch.Tensor:
        d2, _ = index.search(np.ascontiguousarray(q.numpy(), dtype=np.float32), k)
        return torch.from_numpy(np.sqrt(np.maximum(d2, 0))).mean(1)
    return search


def faiss_candidates(codes: torch.Tensor, k: int, seed: int) -> dict[str, Callable[[], Search]]:
    try:
        import faiss
    except ImportError:
        say("  (faiss-cpu not installed: its indexes are left out)")
        return {}
    faiss.omp_set_num_threads(torch.get_num_threads())
    x = np.ascontiguousarray(codes.numpy(), dtype=np.float32)
    d = x.shape[1]

    def flat():
        index = faiss.IndexFlatL2(d)
        index.add(x)
        return faiss_search(index, k)

    def ivf(nlist: int, nprobe: int):
        def build():
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
            index.cp.seed = seed
            index.train(x)
            index.add(x)
            index.nprobe = nprobe
            return faiss_search(index, k)
        return build

    def hnsw(m: int, ef: int):
        def build():
            index = faiss.IndexHNSWFlat(d, m)
            index.hnsw.efSearch = ef
            index.add(x)
            return faiss_search(index, k)
        return build

    lists = max(1, len(x) // knn.PER_LIST)
    return {"faiss flat (exact)": flat, f"faiss IVF {lists}, nprobe 8": ivf(lists, 8),
            f"faiss IVF {lists}, nprobe 32": ivf(lists, 32), "faiss HNSW 32, ef 64": hnsw(32, 64)}


def candidates(codes: torch.Tensor, k: int, seed: int, sizes: list[int]) -> dict[str, Callable[[], Search]]:
    out: dict[str, Callable[[], Search]] = {
        "exact cdist+topk (now)": lambda: exact_cdist(codes, k),
        "anomalyvae.detectors.knn.KnnIndex": lambda: knn.KnnIndex(codes, k).mean_distance,
        "exact addmm+topk": lambda: exact_addmm(codes, k, 1024),
        "exact addmm+group minima": lambda: exact_grouped(codes, k),
    }
    out |= faiss_candidates(codes, k, seed)
    out["no search (ceiling: knn = 0)"] = lambda: (lambda q: torch.zeros(len(q)))
    for n in sizes:
        if n >= len(codes):
            continue
        out[f"k-means {n} centres"] = lambda n=n: exact_addmm(kmeans_centres(codes, n, seed), k)
        out[f"random {n} codes"] = lambda n=n: exact_addmm(random_subset(codes, n, seed), k)
        out[f"k-centre {n} coreset"] = lambda n=n: exact_addmm(kcentre_coreset(codes, n, seed), k)
    return out


# -- one case ----------------------------------------------------------------------------------------------------
def paired(a, b, reps: int) -> tuple[float, float, float]:
    """Median seconds of a and of b, run alternately so load on a shared machine hits both alike, and the
    median of the per-pair ratios time(a) / time(b)."""
    a(), b()
    ta, tb = [], []
    for _ in range(reps):
        for fn, ts in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb), statistics.median(x / y for x, y in zip(ta, tb))


def trained(cfg, cache: Path | None, name: str):
    """The default model of `cfg` (from the cache folder when it holds one) and its train/val split."""
    data = load_train(cfg)
    folder = cache / name if cache else None
    if folder and (folder / "model.safetensors").exists():
        return AnomalyVAE.load(folder, device="cpu"), data
    est = AnomalyVAE.from_config(cfg)
    t0 = time.perf_counter()
    est.fit_splits(cfg, data.train, data.val)
    say(f"  trained {cfg.arch} on {len(data.train)} images, {cfg.epochs} epoch(s): {time.perf_counter() - t0:.0f}s")
    if folder:
        est.save(folder)
    return est, data


def run_case(name: str, cfg, args) -> list[dict]:
    say(f"\n## {name}")
    est, data = trained(cfg, args.cache, f"{cfg.dataset}-{cfg.normal.replace(',', '_')}-{cfg.arch}")
    model, state, cfg = est.model_, est.state_, est.config_
    test = load_test(cfg.dataset, cfg.resolved_data_dir(), cfg.image_size)
    y = ~np.isin(test.labels.numpy(), parse_classes(cfg.normal))
    codes = state.codes
    mu_test = scoring.encode_mu(model, test.images)
    mu_val = scoring.encode_mu(model, data.val.images)
    k = cfg.knn_k
    say(f"  {len(codes)} normal codes of dimension {codes.shape[1]}, k={k}; {len(test)} test images "
        f"({int(y.sum())} anomalies), {len(data.val)} held-out normal images; torch threads {torch.get_num_threads()}")

    recon = lambda: scoring.score_inputs(model, test.images, state, cfg, ["recon"])

    with torch.inference_mode():  # the yardstick for rounding: float64 differences, no matmul
        truth = exact_direct(codes.double(), k)(mu_test.double()).numpy()
    rows, exact = [], None
    for label, build in candidates(codes, k, cfg.seed, args.sizes).items():
        t0 = time.perf_counter()
        search = build()
        build_s = time.perf_counter() - t0
        with torch.inference_mode():
            search_s = timed(lambda: search(mu_test), args.reps)
            knn_test, knn_val = search(mu_test).double().numpy(), search(mu_val).double().numpy()
        # the default score end to end, with this search in scoring's place and knn re-normalised on val
        st = dataclasses.replace(state, mean={**state.mean, "knn": float(knn_val.mean())},
                                 std={**state.std, "knn": float(knn_val.std()) or 1.0})
        scoring.knn_distance = lambda q, _codes, _k: search(q)
        try:
            default = lambda: scoring.score_inputs(model, test.images, st, cfg, ["combined"])
            default_s, recon_s, ratio = paired(default, recon, args.reps)
            combined = default()["combined"]
        finally:
            scoring.knn_distance = KNN_NOW
        row = {"case": name, "search": label, "build_s": build_s, "codes_per_s": len(test) / search_s,
               "default_img_per_s": len(test) / default_s, "recon_img_per_s": len(test) / recon_s,
               "default_vs_recon": 1 / ratio,
               "knn_auroc": ranking(y, knn_test)["auroc"], "combined_auroc": ranking(y, combined)["auroc"]}
        if exact is None:
            exact = row | {"knn": knn_test}
        row["max_abs_err"] = float(np.abs(knn_test - truth).max())
        rows.append(row)
        say(f"  {label:30s} build {build_s:6.2f}s  search {row['codes_per_s']:9.0f} codes/s "
            f"({row['codes_per_s'] / exact['codes_per_s']:6.2f}x exact)  default score "
            f"{row['default_img_per_s']:6.0f} img/s, recon {row['recon_img_per_s']:6.0f} ({row['default_vs_recon']:.2f}x)  "
            f"AUROC knn {row['knn_auroc']:.4f} ({row['knn_auroc'] - exact['knn_auroc']:+.4f})  combined "
            f"{row['combined_auroc']:.4f} ({row['combined_auroc'] - exact['combined_auroc']:+.4f})  "
            f"max |knn - float64| {row['max_abs_err']:.1g}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("ANOMALYVAE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared/datasets/mnist")))
    ap.add_argument("--epochs", type=int, default=2, help="training epochs of each model")
    ap.add_argument("--fashion-class", type=int, default=0, help="Fashion-MNIST one-class: the normal class")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096], help="compressed set sizes")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads [default: OMP_NUM_THREADS or 1]")
    ap.add_argument("--cache", type=Path, default=None, help="folder to keep the trained models in between runs")
    ap.add_argument("--only", choices=["mnist", "mnist-mlp", "fashion"], default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads or int(os.environ.get("OMP_NUM_THREADS", "1")))
    say(f"# benchmarks/knn_search.py  torch {torch.__version__}  threads {torch.get_num_threads()}  "
        f"load average {os.getloadavg()[0]:.2f}")
    common = dict(epochs=args.epochs, patience=args.epochs, threads=torch.get_num_threads(), device="cpu")
    cases = {"mnist": ("MNIST leave-one-out (digit 9 anomalous), conv", make_config(normal="0-8", data_dir=args.data, **common)),
             "mnist-mlp": ("MNIST leave-one-out (digit 9 anomalous), mlp",
                           make_config(normal="0-8", data_dir=args.data, arch="mlp", **common)),
             "fashion": (f"Fashion-MNIST one-class (class {args.fashion_class} normal)",
                         make_config(dataset="fashion-mnist", normal=str(args.fashion_class), **common))}
    for key, (name, cfg) in cases.items():
        if args.only in (None, key):
            run_case(name, cfg, args)
    say(f"# load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
