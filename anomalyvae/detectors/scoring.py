"""What the VAE detectors share: one network pass over a batch (`Pass`) and the scores computed from it, the
latent model of the normal codes, and the loop that scores many inputs in batches. Each detector module adds
its own scores (whole.py: blur, peak, hknn; rows.py: xknn; local.py: local) and keeps its own state.
All scores are higher = more anomalous and deterministic per input and model.

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
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from ..config import Config
from ..errors import AnomalyVAEError
from ..scores import SCORES
from ..vae import device
from ..vae.model import as_float, class_logits, kl_divergence
from ..vae.runtime import autocast, batch_for, batches, resolve_precision

_IWAE_SEED = 1234


@dataclass
class LatentState:
    """What the VAE detectors learn of the normal codes besides the network: the Gaussian mixture (`latent`),
    the codes themselves (`knn`), and each score's mean and spread on held-out normal data (`combined`).

    Detectors extend it with their own tensors (whole.WholeState, rows.RowsState); every tensor field is saved
    in the model file as `score.<field>`, the statistics in its metadata."""

    gmm_log_weights: torch.Tensor | None = None  # (C,)
    gmm_means: torch.Tensor | None = None  # (C, d)
    gmm_prec_chol: torch.Tensor | None = None  # (C, d, d), sklearn's precisions_cholesky_
    codes: torch.Tensor | None = None  # (N, d) mu of the normal training data, for knn
    knn_centroids: torch.Tensor | None = None  # (L, d) the knn index's lists (knn.list_centroids); None: exact
    mean: dict[str, float] = field(default_factory=dict)  # per score, on held-out normal data
    std: dict[str, float] = field(default_factory=dict)
    # search indexes built when first needed, never saved; shared by the copies `to` makes, so a model builds
    # each once however many times it scores
    indexes: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def tensor_fields(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in ("mean", "std", "indexes")]

    def to(self, device: torch.device, dtype: torch.dtype = torch.float32):
        """A copy whose tensors live on `device` (as `dtype`), for scoring on the model's device."""
        moved = {k: None if getattr(self, k) is None else getattr(self, k).to(device, dtype)
                 for k in self.tensor_fields()}
        return type(self)(**moved, mean=self.mean, std=self.std, indexes=self.indexes)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k).contiguous() for k in self.tensor_fields() if getattr(self, k) is not None}

    def meta(self) -> dict:
        """What the model file's metadata keeps besides score_mean and score_std: nothing here."""
        return {}

    @classmethod
    def from_saved(cls, tensors: dict[str, torch.Tensor], meta: dict):
        return cls(**{k: tensors.get(f"score.{k}") for k in cls.tensor_fields()}, mean=dict(meta["score_mean"]),
                   std=dict(meta["score_std"]))

    def knn_index(self, k: int):
        """The nearest-neighbour search over `codes` (knn.KnnIndex: faiss IVF for large code sets)."""
        from .knn import KnnIndex

        key = (k, self.codes.device, self.codes.dtype)
        if key not in self.indexes:
            self.indexes[key] = KnnIndex(self.codes, k, centroids=self.knn_centroids)
        return self.indexes[key]

    def bank(self, name: str, codes: torch.Tensor, centroids: torch.Tensor | None):
        """The memory bank (memory.MemoryBank) of `codes`, built once per device and dtype."""
        from .memory import MemoryBank

        key = (name, codes.device, codes.dtype)
        if key not in self.indexes:
            self.indexes[key] = MemoryBank(codes, centroids)
        return self.indexes[key]

    def has(self, need: str) -> bool:
        return {"mixture": self.gmm_means is not None, "codes": self.codes is not None,
                "normalisation": bool(self.mean)}.get(need, False)


def fit_latent(mu: torch.Tensor, components: int, seed: int) -> dict[str, torch.Tensor]:
    """The normal codes (for knn) and a Gaussian mixture over them, as LatentState's fields: parameters only."""
    from sklearn.mixture import GaussianMixture

    from .knn import list_centroids

    x = mu.double().numpy()
    if len(x) > 20000:  # 20k codes are plenty for a 10-component mixture, and the fit is linear in N
        x = x[np.random.default_rng(seed).choice(len(x), 20000, replace=False)]
    k = max(1, min(components, len(x) // 2))
    gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed, max_iter=200).fit(x)
    return dict(
        gmm_log_weights=torch.from_numpy(np.log(gmm.weights_)).float(),
        gmm_means=torch.from_numpy(gmm.means_).float(),
        gmm_prec_chol=torch.from_numpy(gmm.precisions_cholesky_).float(),
        codes=mu.float().contiguous(),
        knn_centroids=list_centroids(mu.float()),
    )


def latent_nll(mu: torch.Tensor, state: LatentState) -> torch.Tensor:
    """-log sum_c w_c N(mu | m_c, S_c), computed with the precision Cholesky factors as sklearn does."""
    y = torch.einsum("nd,cde->nce", mu, state.gmm_prec_chol) - torch.einsum(
        "cd,cde->ce", state.gmm_means, state.gmm_prec_chol)
    log_det = torch.log(torch.diagonal(state.gmm_prec_chol, dim1=1, dim2=2)).sum(1)
    d = mu.shape[1]
    log_prob = -0.5 * (d * math.log(2 * math.pi) + y.pow(2).sum(2)) + log_det
    return -torch.logsumexp(log_prob + state.gmm_log_weights, dim=1)


def knn_distance(mu: torch.Tensor, state: LatentState, k: int) -> torch.Tensor:
    """Mean Euclidean distance from each code to its k nearest normal codes (knn.py says how it is searched)."""
    return state.knn_index(k).mean_distance(mu)


@dataclass
class Pass:
    """One encoder and decoder pass over a batch: what every score of a VAE detector is computed from."""

    model: torch.nn.Module
    x: torch.Tensor  # the prepared input
    out: torch.Tensor | None  # the decoder's output at z = mu (None: no network pass, input-only scores)
    mu: torch.Tensor | None
    logvar: torch.Tensor | None
    state: LatentState
    cfg: Config
    precision: str
    compute: dict  # the detector's scores by name: name -> function of the Pass
    hidden: torch.Tensor | None = None  # the encoder's last hidden layer, that mu and logvar are read from
    done: dict[str, torch.Tensor] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor:
        if name not in self.done:
            self.done[name] = self.compute[name](self)
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


def _class_entropy(p: Pass) -> torch.Tensor:
    """Entropy (nats) of the head's softmax over the normal classes: 0 for an input the head is sure of."""
    log_p = torch.log_softmax(class_logits(p.model, p.hidden, p.mu), dim=1)
    return -(log_p.exp() * log_p).sum(1)


def _combined(p: Pass) -> torch.Tensor:
    st = p.state
    return sum((p.get(c) - st.mean[c]) / st.std[c] for c in p.cfg.combine_parts())


# the scores every VAE detector computes from a network pass; each detector adds its own (registry.py lists them)
VAE_SCORES: dict[str, Callable[[Pass], torch.Tensor]] = {
    "recon": lambda p: p.model.nll(p.out, p.x),
    "elbo": lambda p: p.get("recon") + kl_divergence(p.mu, p.logvar),
    "iwae": _iwae,
    "latent": lambda p: latent_nll(p.mu, p.state),
    "knn": lambda p: knn_distance(p.mu, p.state, p.cfg.knn_k),
    "class": _class_entropy,
    "combined": _combined,
}


def check_computable(which, state, cfg: Config) -> None:
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


def vae_pass(model, raw: torch.Tensor, state: LatentState, cfg: Config, which, precision: str,
             compute: dict, input_only: frozenset = frozenset()) -> dict[str, torch.Tensor]:
    """A VAE detector's scores of one batch: the network's pass, unless every score asked for (and every part
    of `combined`) is in `input_only`, computed from the prepared input alone. Under "bfloat16" only the
    network runs in bfloat16."""
    x = model.prepare(raw)
    parts = set(which) | (set(cfg.combine_parts()) if "combined" in which else set())
    if parts <= input_only:
        p = Pass(model, x, None, None, None, state, cfg, precision, compute)
        return {name: as_float(p.get(name)) for name in which}
    with autocast(precision, x.device):
        hidden = model.hidden(x)
        mu, logvar = model.code(hidden)
        mu, logvar = as_float(mu), as_float(logvar)
        out = as_float(model.decode(mu))
    p = Pass(model, x, out, mu, logvar, state, cfg, precision, compute, hidden=hidden)
    return {name: as_float(p.get(name)) for name in which}


def score_all(score_batch: Callable, model, raw: torch.Tensor, state, cfg: Config, which,
              batch_size: int | None = None, double: bool = False) -> dict[str, np.ndarray]:
    """Scores of many raw inputs (uint8/float images or features) as float64 numpy arrays: a detector's
    `score_batch` over consecutive batches. `double`: the network runs in float64 (feature vectors)."""
    check_computable(which, state, cfg)
    model.eval()
    precision = resolve_precision(cfg.precision, "score")
    if double:
        # float64: small MLPs cost little, and float32 matmuls round differently with the batch's size, so a
        # sample's score would depend on what it was scored with (scikit-learn checks that it does not)
        model, precision = copy.deepcopy(model).double(), "float32"
    state = state.to(device.of(model), next(model.parameters()).dtype)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in which}
    with torch.inference_mode():
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


def fit_normalisation(state: LatentState, scores: dict[str, np.ndarray]) -> None:
    """Record mean and std of each score on held-out normal data: the scale 'combined' sums on."""
    for k, v in scores.items():
        state.mean[k] = float(np.mean(v))
        state.std[k] = float(np.std(v)) or 1.0
