"""Computing the scores named in `scores.py` (higher = more anomalous), all deterministic per input and model.

- recon:    -log p(x | z=mu), the reconstruction error at the posterior mean, in nats (Bernoulli for
            images, Gaussian for feature vectors).
- elbo:     recon + KL(q(z|x) || N(0, I)): the negative ELBO evaluated at z = mu (no sampling noise).
- iwae:     the importance-weighted bound (Burda et al. 2016) with K samples; the K noise vectors are
            drawn once from a fixed seed and shared by every input, so a score never depends on its batch.
- blur:     squared error between input and reconstruction after a 5x5 box blur of both: unlike the
            Bernoulli likelihood it does not reward simple images, and it forgives one-pixel misalignment.
- peak:     the highest value of the image's anomaly map (pixel_map): the MVTec-AD way to score an image, as
            a defect covering 0.5% of the pixels moves any image-wide sum by little.
- latent:   -log density of mu under a Gaussian mixture fitted to the mu of the normal training data:
            an input whose code lies where no normal code lies is anomalous even if it reconstructs well.
- knn:      mean distance from mu to its k nearest codes of the normal training data (non-parametric;
            an inverted-file index above knn.IVF_MIN_CODES codes, see knn.py).
- xknn:     mean distance from the standardised input to its k nearest standardised normal training rows,
            kept in a memory.MemoryBank (feature vectors only): on the real tables of benchmarks/tabular.py the
            nearest-neighbour detector beat every likelihood score, and it is what the table default sums.
- combined: the sum of the components named by Config.combine, each standardised with its mean and
            standard deviation on the held-out normal data (never on anomalies).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..vae import device
from ..config import Config
from ..errors import AnomalyVAEError
from ..vae.model import as_float, class_logits, kl_divergence
from ..vae.runtime import autocast, resolve_precision
from ..scores import SCORES

_IWAE_SEED = 1234


@dataclass
class ScoreState:
    """What scoring learns from the normal data besides the network: the latent mixture and score statistics."""

    gmm_log_weights: torch.Tensor | None = None  # (C,)
    gmm_means: torch.Tensor | None = None  # (C, d)
    gmm_prec_chol: torch.Tensor | None = None  # (C, d, d), sklearn's precisions_cholesky_
    codes: torch.Tensor | None = None  # (N, d) mu of the normal training data, for knn
    knn_centroids: torch.Tensor | None = None  # (L, d) the knn index's lists (knn.list_centroids); None: exact
    rows: torch.Tensor | None = None  # (M, D) standardised normal training rows (feature vectors), for xknn
    row_centroids: torch.Tensor | None = None  # their memory bank's IVF lists; None: searched exactly
    # hknn: the encoder's last hidden layer of the normal training inputs, live units only (a unit that never
    # fires carries nothing), each standardised by its mean and spread over those inputs
    hidden_pick: torch.Tensor | None = None  # (H, L) one-hot columns: h @ hidden_pick keeps the live units
    hidden_mean: torch.Tensor | None = None  # (L,)
    hidden_scale: torch.Tensor | None = None  # (L,)
    hidden_codes: torch.Tensor | None = None  # (M, L)
    hidden_centroids: torch.Tensor | None = None  # their memory bank's IVF lists
    mean: dict[str, float] = field(default_factory=dict)  # per score, on held-out normal data
    std: dict[str, float] = field(default_factory=dict)
    # the local detector (local.py): a memory bank of normal patch codes per pyramid scale, and each scale's
    # novelty mean and standard deviation over the held-out normal images' pixels
    banks: list = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    map_mean: list[float] = field(default_factory=list)
    map_std: list[float] = field(default_factory=list)
    # built from `codes` when first needed, never saved; shared by the copies `to` makes, so a model builds
    # its search index once however many times it scores
    indexes: dict = field(default_factory=dict, repr=False, compare=False)

    TENSORS = ("gmm_log_weights", "gmm_means", "gmm_prec_chol", "codes", "knn_centroids", "rows", "row_centroids",
               "hidden_pick", "hidden_mean", "hidden_scale", "hidden_codes", "hidden_centroids")

    def to(self, device: torch.device, dtype: torch.dtype = torch.float32) -> "ScoreState":
        """A copy whose tensors live on `device` (as `dtype`), for scoring on the model's device."""
        moved = {k: None if getattr(self, k) is None else getattr(self, k).to(device, dtype) for k in self.TENSORS}
        return ScoreState(**moved, mean=self.mean, std=self.std, indexes=self.indexes, banks=self.banks,
                          scales=self.scales, map_mean=self.map_mean, map_std=self.map_std)

    def knn_index(self, k: int):
        """The nearest-neighbour search over `codes` (knn.KnnIndex: faiss IVF for large code sets)."""
        from .knn import KnnIndex

        key = (k, self.codes.device, self.codes.dtype)
        if key not in self.indexes:
            self.indexes[key] = KnnIndex(self.codes, k, centroids=self.knn_centroids)
        return self.indexes[key]

    def row_bank(self):
        """The memory bank of standardised normal rows that xknn searches (memory.MemoryBank), built once."""
        return self._bank("rows", self.rows, self.row_centroids)

    def hidden_bank(self):
        """The memory bank of standardised normal hidden layers that hknn searches, built once."""
        return self._bank("hidden", self.hidden_codes, self.hidden_centroids)

    def _bank(self, name: str, codes: torch.Tensor, centroids: torch.Tensor | None):
        from .memory import MemoryBank

        key = (name, codes.device, codes.dtype)
        if key not in self.indexes:
            self.indexes[key] = MemoryBank(codes, centroids)
        return self.indexes[key]

    def standard_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """(N, H) hidden layers -> (N, L) their live units, standardised as the bank's are (a product with a
        0/1 matrix, not a boolean index: no data-dependent shape, so no device synchronisation)."""
        return (h @ self.hidden_pick - self.hidden_mean) / self.hidden_scale

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {k: getattr(self, k).contiguous() for k in self.TENSORS if getattr(self, k) is not None}
        for i, bank in enumerate(self.banks):
            out[f"bank{i}"] = bank.codes.contiguous()
            if bank.centroids is not None:
                out[f"bank{i}_centroids"] = bank.centroids.contiguous()
        return out

    def local_meta(self) -> dict:
        """What the model file's metadata keeps of the local detector (the banks are tensors)."""
        return {"scales": self.scales, "map_mean": self.map_mean, "map_std": self.map_std} if self.banks else {}

    @classmethod
    def from_saved(cls, tensors: dict[str, torch.Tensor], meta: dict) -> "ScoreState":
        from .memory import MemoryBank

        local = meta.get("local") or {}
        banks = [MemoryBank(tensors[f"score.bank{i}"], tensors.get(f"score.bank{i}_centroids"))
                 for i in range(len(local.get("scales", [])))]
        return cls(**{k: tensors.get(f"score.{k}") for k in cls.TENSORS}, mean=dict(meta["score_mean"]),
                   std=dict(meta["score_std"]), banks=banks, scales=list(local.get("scales", [])),
                   map_mean=list(local.get("map_mean", [])), map_std=list(local.get("map_std", [])))

    def has(self, need: str) -> bool:
        return {"mixture": self.gmm_means is not None, "codes": self.codes is not None,
                "normalisation": bool(self.mean), "rows": self.rows is not None, "bank": bool(self.banks),
                "hidden": self.hidden_codes is not None}[need]


def fit_latent(mu: torch.Tensor, components: int, seed: int) -> ScoreState:
    """Keep the normal codes (for knn) and fit a Gaussian mixture over them; parameters only, no objects."""
    from sklearn.mixture import GaussianMixture

    from .knn import list_centroids

    x = mu.double().numpy()
    if len(x) > 20000:  # 20k codes are plenty for a 10-component mixture, and the fit is linear in N
        x = x[np.random.default_rng(seed).choice(len(x), 20000, replace=False)]
    k = max(1, min(components, len(x) // 2))
    gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed, max_iter=200).fit(x)
    return ScoreState(
        gmm_log_weights=torch.from_numpy(np.log(gmm.weights_)).float(),
        gmm_means=torch.from_numpy(gmm.means_).float(),
        gmm_prec_chol=torch.from_numpy(gmm.precisions_cholesky_).float(),
        codes=mu.float().contiguous(),
        knn_centroids=list_centroids(mu.float()),
    )


BANK_ROWS = 10_000  # normal rows kept for xknn: larger tables are thinned by a k-center coreset (memory.py)


@torch.inference_mode()
def fit_rows(state: ScoreState, model, raw: torch.Tensor, seed: int) -> None:
    """Keep the standardised normal rows (at most BANK_ROWS, a coreset beyond) as xknn's memory bank."""
    from .memory import MemoryBank

    bank = MemoryBank.build(model.prepare(raw).float().cpu(), BANK_ROWS, "coreset", seed)
    state.rows, state.row_centroids = bank.codes, bank.centroids


HIDDEN_BANK = 65_536  # normal hidden layers kept for hknn (all of MNIST's 54k): a 16k random sample cost
# 0.012 mean AUROC on MNIST digits 1, 4, 7, 9 left out (python benchmarks/probes/hidden_bank.py 9,1,4,7)
LIVE = 1e-3  # a hidden unit whose spread over the normal inputs is below this never fires: left out


@torch.inference_mode()
def fit_hidden(state: ScoreState, h: torch.Tensor, seed: int) -> None:
    """Keep the normal inputs' hidden layers h (N, H) (live units, standardised) as hknn's memory bank."""
    from .memory import MemoryBank

    spread = h.std(0)
    live = spread > LIVE
    if not live.any():
        live = spread >= spread.max()  # a collapsed encoder: keep its one most variable unit
    state.hidden_pick = torch.eye(len(live))[:, live].contiguous()
    state.hidden_mean, state.hidden_scale = h[:, live].mean(0), spread[live]
    bank = MemoryBank.build(state.standard_hidden(h), HIDDEN_BANK, "random", seed)
    state.hidden_codes, state.hidden_centroids = bank.codes, bank.centroids


def latent_nll(mu: torch.Tensor, state: ScoreState) -> torch.Tensor:
    """-log sum_c w_c N(mu | m_c, S_c), computed with the precision Cholesky factors as sklearn does."""
    y = torch.einsum("nd,cde->nce", mu, state.gmm_prec_chol) - torch.einsum(
        "cd,cde->ce", state.gmm_means, state.gmm_prec_chol)
    log_det = torch.log(torch.diagonal(state.gmm_prec_chol, dim1=1, dim2=2)).sum(1)
    d = mu.shape[1]
    log_prob = -0.5 * (d * math.log(2 * math.pi) + y.pow(2).sum(2)) + log_det
    return -torch.logsumexp(log_prob + state.gmm_log_weights, dim=1)


def knn_distance(mu: torch.Tensor, state: ScoreState, k: int) -> torch.Tensor:
    """Mean Euclidean distance from each code to its k nearest normal codes (knn.py says how it is searched)."""
    return state.knn_index(k).mean_distance(mu)


@dataclass
class Pass:
    """One encoder and decoder pass over a batch: what every score is computed from."""

    model: torch.nn.Module
    x: torch.Tensor  # the prepared input
    out: torch.Tensor | None  # the decoder's output at z = mu (None: no network pass, INPUT_ONLY scores)
    mu: torch.Tensor | None
    logvar: torch.Tensor | None
    state: ScoreState
    cfg: Config
    precision: str
    raw: torch.Tensor | None = None  # the batch as given: the local detector cuts its own patches from it
    hidden: torch.Tensor | None = None  # the encoder's last hidden layer, that mu and logvar are read from
    done: dict[str, torch.Tensor] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor:
        if name not in self.done:
            self.done[name] = COMPUTE[name](self)
        return self.done[name]


def _iwae(p: Pass) -> torch.Tensor:
    """-log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), with z_k = mu + sigma * eps_k and shared eps."""
    k = p.cfg.iwae_samples
    eps = torch.randn(k, p.mu.shape[1], generator=torch.Generator().manual_seed(_IWAE_SEED)).to(p.mu)
    std = torch.exp(0.5 * p.logvar)
    log_w = []
    with autocast(p.precision, p.mu.device):
        for e in eps:
            z = p.mu + std * e
            log_px = -p.model.nll(p.model.decode(z), p.x)
            log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
            log_qz = -0.5 * (e.pow(2) + math.log(2 * math.pi)).sum() - 0.5 * p.logvar.sum(1)
            log_w.append(log_px + log_pz - log_qz)
    return as_float(-(torch.logsumexp(torch.stack(log_w), dim=0) - math.log(k)))


def _blur(p: Pass) -> torch.Tensor:
    diff = p.x - p.model.mean(p.out)
    return box_blur(diff).pow(2).flatten(1).sum(1)


def box_blur(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False) of (N, C, H, W), as two
    products with banded matrices: the window's in-image count is a product of a row and a column count, so
    the blur is separable; a third of avg_pool2d's time on 28 px images (measured, one thread)."""
    return _box_matrix(x.shape[-2], size, x) @ x @ _box_matrix(x.shape[-1], size, x).T


def _box_matrix(n: int, size: int, like: torch.Tensor) -> torch.Tensor:
    i = torch.arange(n, device=like.device)
    band = ((i[:, None] - i[None, :]).abs() <= size // 2).to(like.dtype)
    return band / band.sum(1, keepdim=True)


MAP_SIGMA = 1 / 128  # anomaly maps' Gaussian smoothing, a fraction of the image side: 1 px at 128, 0.22 at 28.
# Measured on the synthetic inspection set (benchmarks/synthetic_inspection.py): best AUPRO and image AUROC of
# the maps' maxima among 0, 1/128, 1/64, 1/32 and 1/16, and within 0.001 of the best pixel AUROC


def pixel_map(x: torch.Tensor, rec: torch.Tensor, sigma: float = MAP_SIGMA) -> torch.Tensor:
    """Anomaly maps (N, H, W): squared error of (N, C, H, W) input and reconstruction summed over channels,
    smoothed with a Gaussian of sigma x the image side (truncated at 4 sigma, edges repeated, as scipy's)."""
    return smooth((x.float() - rec.float()).pow(2).sum(1), sigma)


def smooth(m: torch.Tensor, sigma: float = MAP_SIGMA) -> torch.Tensor:
    """(N, H, W) maps blurred by a Gaussian of sigma x the image side."""
    s = sigma * m.shape[-1]
    if s <= 0:
        return m
    # the separable blur as two products with banded matrices: a 1-channel conv2d with a 17-tap kernel took
    # a fifth of the scoring time of 128 px images (measured), a matrix product a tenth of that
    return _gaussian_matrix(m.shape[-2], s, m) @ m @ _gaussian_matrix(m.shape[-1], s, m).T


def _gaussian_matrix(n: int, s: float, like: torch.Tensor) -> torch.Tensor:
    """(n, n) M with (M @ v)[i] = sum_t k[t] v[clamp(i + t)]: a Gaussian blur of v with repeated edges."""
    r = max(1, math.ceil(4 * s))
    t = torch.arange(-r, r + 1, device=like.device)
    k = torch.exp(-0.5 * (t.to(like.dtype) / s) ** 2)
    src = (torch.arange(n, device=like.device)[:, None] + t).clamp(0, n - 1)
    return torch.zeros(n, n, dtype=like.dtype, device=like.device).scatter_add_(1, src, (k / k.sum()).expand(n, -1))


def _class_entropy(p: Pass) -> torch.Tensor:
    """Entropy (nats) of the head's softmax over the normal classes: 0 for an input the head is sure of."""
    log_p = torch.log_softmax(class_logits(p.model, p.mu), dim=1)
    return -(log_p.exp() * log_p).sum(1)


def _combined(p: Pass) -> torch.Tensor:
    st = p.state
    return sum((p.get(c) - st.mean[c]) / st.std[c] for c in p.cfg.combine_parts())


COMPUTE: dict[str, Callable[[Pass], torch.Tensor]] = {
    "recon": lambda p: p.model.nll(p.out, p.x),
    "elbo": lambda p: p.get("recon") + kl_divergence(p.mu, p.logvar),
    "iwae": _iwae,
    "blur": _blur,
    "peak": lambda p: pixel_map(p.x, p.model.mean(p.out)).flatten(1).amax(1),
    "latent": lambda p: latent_nll(p.mu, p.state),
    "knn": lambda p: knn_distance(p.mu, p.state, p.cfg.knn_k),
    "hknn": lambda p: p.state.hidden_bank().distance(p.state.standard_hidden(p.hidden.float()), p.cfg.knn_k).to(p.mu),
    # searched in float32 whatever the model's precision: an exact float64 search was about 2x slower (measured)
    "xknn": lambda p: p.state.row_bank().distance(p.x.float(), p.cfg.knn_k).to(p.x.dtype),
    "class": _class_entropy,
    "combined": _combined,
    "local": lambda p: local_maps(p.model, p.state, p.raw).flatten(1).amax(1),
}
INPUT_ONLY = {"xknn", "combined"}  # scores computed from the prepared input alone (combined: of such parts)


def local_maps(model, state: ScoreState, raw: torch.Tensor) -> torch.Tensor:
    """The local detector's anomaly maps (N, S, S) of raw images (local.anomaly_maps)."""
    from . import local

    return local.anomaly_maps(model, state.banks, state.scales, state.map_mean, state.map_std, raw, MAP_SIGMA)
assert set(COMPUTE) == set(SCORES), "scoring.COMPUTE and scores.SCORES must name the same scores"


def check_computable(which, state: ScoreState, cfg: Config) -> None:
    """A score whose fitted state is missing is an error, never silently left out."""
    from ..scores import check

    check(which, cfg.input_kind, detector=cfg.detector, labels=cfg.use_labels)
    for name in which:
        parts = cfg.combine_parts() if name == "combined" else []
        for n in [name, *parts]:
            missing = [need for need in SCORES[n].needs if not state.has(need)]
            if missing:
                raise AnomalyVAEError(f"score {n!r} cannot be computed: the model has no fitted {missing[0]}; "
                                      "re-fit it (or choose another score)")


@torch.inference_mode()
def score_batch(model, raw: torch.Tensor, state: ScoreState, cfg: Config, which, precision: str = "float32"):
    """Scores of one batch of raw inputs as float tensors on the model's device, keyed by score name;
    `state` must be on that device too (ScoreState.to). Under "bfloat16" only the network runs in bfloat16."""
    if cfg.detector == "local":
        p = Pass(model, raw, None, None, None, state, cfg, precision, raw=raw)  # it cuts its own patches
        return {name: as_float(p.get(name)) for name in which}
    x = model.prepare(raw)
    parts = set(which) | (set(cfg.combine_parts()) if "combined" in which else set())
    if parts <= INPUT_ONLY:  # the table default: no network pass is needed
        return {name: as_float(Pass(model, x, None, None, None, state, cfg, precision).get(name)) for name in which}
    with autocast(precision, x.device):
        hidden = model.hidden(x)
        mu, logvar = model.code(hidden)
        mu, logvar = as_float(mu), as_float(logvar)
        out = as_float(model.decode(mu))
    p = Pass(model, x, out, mu, logvar, state, cfg, precision, hidden=hidden)
    return {name: as_float(p.get(name)) for name in which}


BATCH_VALUES = 1 << 21  # input values per scoring batch: 42 RGB images of 128 px, 1024 (the cap) of 28 px grey.
# Measured on 1,000 RGB 128 px images, one thread: batches of 32 scored them in 3.4 s, of 1024 in 6.7 s (the
# activations of a big batch of large images fall out of the caches), and memory stays a few hundred MB.


def batch_for(raw: torch.Tensor, most: int = 1024) -> int:
    """How many inputs to score at once: fewer as they grow, so time and memory stay flat in their size."""
    return max(1, min(most, BATCH_VALUES // max(1, math.prod(raw.shape[1:]))))


def batches(n: int, size: int) -> Iterator[slice]:
    """The one batching loop: consecutive slices of at most `size` items, so memory stays flat."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def score_inputs(model, raw: torch.Tensor, state: ScoreState, cfg: Config, which,
                 batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Scores of many prepared-to-be inputs (uint8/float images or features), as float64 numpy arrays."""
    check_computable(which, state, cfg)
    model.eval()
    precision = resolve_precision(cfg.precision, "score")
    if cfg.input_kind == "features":
        # float64: small MLPs cost little, and float32 matmuls round differently with the batch's size, so a
        # sample's score would depend on what it was scored with (scikit-learn checks that it does not)
        model, precision = copy.deepcopy(model).double(), "float32"
    state = state.to(device.of(model), next(model.parameters()).dtype)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in which}
    for sl in batches(len(raw), batch_size or batch_for(raw)):
        for k, v in score_batch(model, raw[sl], state, cfg, which, precision).items():
            parts[k].append(v.cpu())
    return {k: torch.cat(v).double().numpy() for k, v in parts.items()}


@torch.inference_mode()
def encode_mu(model, raw: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Posterior means of many inputs, on the CPU."""
    return encode_hidden(model, raw, batch_size)[1]


@torch.inference_mode()
def encode_hidden(model, raw: torch.Tensor, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's last hidden layers (N, H) and posterior means (N, d) of many inputs, in one pass, on the
    CPU (hknn's bank and the latent mixture are fitted from the same pass)."""
    model.eval()
    hs, mus = [], []
    for sl in batches(len(raw), batch_size or batch_for(raw, 2048)):
        h = model.hidden(model.prepare(raw[sl]))
        hs.append(h.float().cpu())
        mus.append(model.code(h)[0].float().cpu())
    return torch.cat(hs), torch.cat(mus)


@torch.inference_mode()
def reconstruct(model, raw: torch.Tensor, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstructions E[x | z = mu] and per-element -log p(x_i | z = mu), on the CPU: what heat maps draw."""
    model.eval()
    recs, errs = [], []
    for sl in batches(len(raw), batch_size or batch_for(raw)):
        x = model.prepare(raw[sl])
        out = model.decode(model.encode(x)[0])
        recs.append(model.mean(out).float().cpu())
        errs.append(model.nll_terms(out, x).cpu())
    return torch.cat(recs), torch.cat(errs)


def fit_normalisation(state: ScoreState, scores: dict[str, np.ndarray]) -> None:
    """Record mean and std of each score on held-out normal data: the scale 'combined' sums on."""
    for k, v in scores.items():
        state.mean[k] = float(np.mean(v))
        state.std[k] = float(np.std(v)) or 1.0
