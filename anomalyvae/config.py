"""The one typed configuration object: defaults here, YAML files override them, CLI flags override both."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .detectors.registry import CHOICES, DETECTORS as REGISTRY
from .errors import AnomalyVAEError

DATASETS = ("mnist", "fashion-mnist", "mvtec", "folder")  # mvtec and folder: layouts.py
IDX_DATASETS = ("mnist", "fashion-mnist")  # the labelled ones, with classes and a test split of their own
MAX_IMAGE_SIZE = 1024  # 300 RGB training images of 1024 px already hold 0.9 GB in memory
ARCHS = ("auto", "conv", "mlp")  # auto: conv for images of side >= 16, else mlp
INPUT_KINDS = ("images", "features", "series")  # series: data/series.py, detectors/series.py
PRECISIONS = ("auto", "float32", "bfloat16")
# measured: benchmarks/detection.py (class images), benchmarks/tabular.py (features); images of a folder or an
# MVTec-AD layout under the global detector keep the sum they were measured with (synthetic inspection set)
DEFAULT_COMBINE = {"images": "knn,hknn,latent", "features": "xknn", "layout": "blur,knn,latent,peak",
                   # class images with their labels: the head's entropy and hknn (MNIST digits 9, 4, 7, 1 left out:
                   # mean AUROC 0.962 against 0.954 for knn,hknn,latent,class; benchmarks/probes/cvae.py)
                   "labels": "hknn,class",
                   "series": "recon,knn"}
# the detector registry (detectors/registry.py): global, one VAE of whole inputs (class datasets, tables);
# local, a VAE of image patches with a memory bank of their normal codes, the default for folders of photos
DETECTORS = CHOICES
LAYOUT_DATASETS = ("mvtec", "folder")  # auto picks the local detector for these
SUBSAMPLINGS = ("random", "coreset")  # memory.py
# image_size unset: folders take their images' own size, the median shorter side rounded down to a multiple of
# 8, at most AUTO_IMAGE_CAP (larger photos are resized to it, aspect ratio not kept); class datasets keep 28
AUTO_IMAGE_CAP = 256


@dataclass
class Config:
    # data
    dataset: str = "mnist"
    data_dir: str | None = None  # None: $ANOMALYVAE_DATA_DIR, else ./data; --dataset mvtec: the dataset's root
    train_dir: str | None = None  # --dataset folder: a folder of normal images
    normal: str = "0-8"  # classes treated as normal, or "all" (mnist and fashion-mnist only)
    val_fraction: float = 0.1  # held out of the normal training data for early stopping and calibration
    limit: int | None = None  # use at most this many training images (quick runs, tests)
    image_size: int | None = None  # None: 28 for class datasets, from the images for folders (AUTO_IMAGE_CAP)
    channels: int | None = None  # image channels, 1 (grey) or 3 (RGB); None: decided from the training data
    input_kind: str = "images"  # images | features (feature vectors: standardised, Gaussian likelihood) | series
    # series (detectors/series.py): points per sliding window, and causal scoring (each point from the window
    # that ends at it: past data only, NAB's streaming protocol)
    window: int = 64
    causal: bool = False
    # model
    detector: str = "auto"  # auto | global | local: auto is local for mvtec / folder images, else global
    scales: int = 3  # local detector: pyramid scales (1, 1/2, 1/4 ...) whose patches it learns and searches
    bank_size: int = 131072  # local detector: normal codes kept per scale (memory.py); 300 images of 128 px give 288k
    bank_subsampling: str = "random"  # random | coreset: how the bank is thinned to bank_size (memory.py)
    # auto: conv for images of side >= 16; mlp for smaller ones (8x8 digits, leave-one-out: 0.949 vs conv 0.926,
    # benchmarks/tabular.py's split, seed 0) and for feature vectors
    arch: str = "auto"
    latent_dim: int | None = None  # None: 20 for mlp images (the seeds' 784-400-20), 16 for conv, 8 for features
    # MLP hidden width; None: 400 (the seeds' 784-400-20), 100 for series windows (Donut's width, a quarter of
    # the multiplications of 400; the two were not compared on NAB)
    hidden: int | None = None
    width: int = 16  # conv model: channels of the first layer, doubled at each stride-2 step
    conv_hidden: int = 256  # conv model: the dense layer between convolutions and latent code
    # training
    epochs: int | None = None  # None: auto_epochs(), about 2,300 optimiser steps (6 epochs on 54k images)
    batch_size: int = 128
    lr: float = 1e-3
    patience: int = 5  # early stopping: epochs without a better validation negative ELBO
    kl_warmup_epochs: int = 0  # linear KL annealing from 0 to 1 over this many epochs
    # the KL term's weight (beta-VAE, Higgins et al. 2017); None: 1, the plain ELBO, for both detectors (lower
    # values were measured and not kept: local.build_patch_model's docstring, issue 21's note for MNIST)
    beta: float | None = None
    free_bits: float = 0.0  # nats per latent dimension below which KL is not penalised (Kingma et al. 2016)
    # a classification head learns the normal classes' labels with the VAE and the score `class` (how unsure the
    # head is which normal class an input is) joins the default sum; None: wherever the normal data has two or
    # more classes (mnist, fashion-mnist), since the user named them; False: the unsupervised detector
    use_labels: bool | None = None
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None: $OMP_NUM_THREADS, else the idle CPUs (runtime.py)
    precision: str = "auto"  # auto | float32 | bfloat16: auto is float32 today (runtime.AUTO_BF16 says why)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps: auto takes a CUDA GPU when there is one (device.py)
    # scoring and threshold
    score: str = "combined"  # the score that is_anomaly and the threshold use
    combine: str | None = None  # the z-scored components "combined" sums; None: DEFAULT_COMBINE (knn,hknn,latent for class images)
    iwae_samples: int = 16
    latent_components: int = 10  # Gaussian mixture over mu of the normal data
    knn_k: int = 5
    fpr: float = 0.05  # target false-positive rate on held-out normal data
    contamination: float | None = None  # scikit-learn's meaning: flag this fraction of the fit data instead
    # tracking
    experiment: str = "anomalyvae"
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else MLflow's default (sqlite mlflow.db)

    def validate(self) -> "Config":
        def bad(name: str, why: str) -> AnomalyVAEError:
            return AnomalyVAEError(f"config: '{name}' {why}")

        from . import scores

        if self.dataset not in DATASETS:
            raise bad("dataset", f"is {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.input_kind not in INPUT_KINDS:
            raise bad("input_kind", f"is {self.input_kind!r}; choose one of {', '.join(INPUT_KINDS)}")
        if self.arch not in ARCHS:
            raise bad("arch", f"is {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.input_kind in ("features", "series") and self.arch == "conv":
            raise bad("arch", f"is 'conv' but {self.input_kind} have no pixel grid; use 'mlp' (or 'auto')")
        if self.detector not in DETECTORS:
            raise bad("detector", f"is {self.detector!r}; choose one of {', '.join(DETECTORS)}")
        if self.detector == "auto" and self.input_kind == "series":
            self.detector = next(d.name for d in REGISTRY if d.inputs == "series")
        if self.detector == "auto":
            self.detector = "local" if self.input_kind == "images" and self.dataset in LAYOUT_DATASETS else "global"
        if not any(d.name == self.detector and d.inputs == self.input_kind for d in REGISTRY):
            ok = [d.name for d in REGISTRY if d.inputs == self.input_kind]
            raise bad("detector", f"is {self.detector!r}, which does not read {self.input_kind}; use {' or '.join(ok)}")
        if self.bank_subsampling not in SUBSAMPLINGS:
            raise bad("bank_subsampling", f"is {self.bank_subsampling!r}; choose one of {', '.join(SUBSAMPLINGS)}")
        if self.image_size is None and (self.dataset not in LAYOUT_DATASETS or self.input_kind != "images"):
            self.image_size = 28
        own = next(d for d in REGISTRY if d.name == self.detector and d.inputs == self.input_kind)
        if self.score == "combined" and "combined" not in own.scores:  # a detector of one score: that score
            self.score = own.scores[0]
        if own.channels and self.input_kind == "images":  # the compare detector: RGB, so colour on grey shows
            if self.channels not in (None, own.channels):
                raise bad("channels", f"is {self.channels} but the {self.detector} detector works in "
                          f"{own.channels} channels; leave --channels unset or use {own.channels}")
            self.channels = own.channels
        if self.input_kind == "series" and self.score == "combined":
            self.score = "recon"  # measured on NAB: benchmarks/series.py
        if self.arch == "auto":
            self.arch = ("mlp" if self.detector == "local" or self.input_kind != "images"
                         or (self.image_size or 28) < 16 else "conv")
        if self.use_labels is None:
            from .data.classes import parse_classes

            self.use_labels = bool(self.input_kind == "images" and self.dataset in IDX_DATASETS
                                   and self.detector == "global" and len(parse_classes(self.normal)) >= 2)
        if self.use_labels and self.dataset in LAYOUT_DATASETS:
            raise bad("use_labels", f"needs the normal data's classes, which --dataset {self.dataset} does not have; "
                      "use a class dataset (mnist, fashion-mnist) or AnomalyVAE(use_labels=True).fit(X, y)")
        if self.use_labels and self.input_kind == "images" and "class" not in own.scores:
            raise bad("use_labels", "needs the global detector (class labels describe whole images); "
                      "add --detector global")
        if self.combine is None:
            # inspection images: the map's maximum finds small defects that image-wide sums dilute
            # (synthetic inspection set: 0.78 without peak, 0.99 with it; benchmarks/combination.py)
            layout = self.detector == "global" and self.dataset in LAYOUT_DATASETS and self.input_kind == "images"
            if self.use_labels and self.input_kind == "images":
                self.combine = DEFAULT_COMBINE["labels"]
            else:
                self.combine = DEFAULT_COMBINE["layout" if layout else self.input_kind] + (",class" if self.use_labels else "")
        try:
            scores.check([self.score], self.input_kind, detector=self.detector, labels=self.use_labels)
            parts = scores.check(self.combine_parts(), self.input_kind, what="combine component",
                                 detector=self.detector if self.input_kind == "series" else "global",
                                 labels=self.use_labels)
        except AnomalyVAEError as e:
            ok = scores.available(self.input_kind, self.detector, self.use_labels)
            raise bad("score" if self.score not in ok else "combine",
                      str(e)) from None
        if not parts or "combined" in parts:
            raise bad("combine", f"is {self.combine!r}; list components from {', '.join(scores.COMPONENTS)}")
        if self.channels not in (None, 1, 3):
            raise bad("channels", f"is {self.channels}; use 1 (grey) or 3 (RGB), or leave it unset to follow the data")
        if self.contamination is not None and not 0.0 < self.contamination <= 0.5:
            raise bad("contamination", f"is {self.contamination}; it must lie in (0, 0.5] (or be unset to use fpr)")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"is {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        from .vae.device import check

        check(self.device)
        if self.dataset in IDX_DATASETS:
            from .data.classes import parse_classes

            parse_classes(self.normal)
        if self.dataset == "folder" and not self.train_dir:
            raise bad("train_dir", "is missing; --dataset folder needs --train-dir DIR of normal images")
        if not 0.0 < self.val_fraction < 1.0:
            raise bad("val_fraction", f"is {self.val_fraction}; it must lie strictly between 0 and 1")
        if not 0.0 < self.fpr < 1.0:
            raise bad("fpr", f"is {self.fpr}; it must lie strictly between 0 and 1 (e.g. 0.05)")
        if self.hidden is None:
            self.hidden = 100 if self.input_kind == "series" else 400
        if self.latent_dim is None:
            self.latent_dim = 8 if self.input_kind != "images" else 20 if self.arch == "mlp" else 16
        for name in ("batch_size", "latent_dim", "hidden", "width", "iwae_samples", "scales", "bank_size",
                     "latent_components", "knn_k", "conv_hidden", "window"):
            if getattr(self, name) < 1:
                raise bad(name, f"is {getattr(self, name)}; it must be at least 1")
        if self.image_size is not None and self.image_size < 1:
            raise bad("image_size", f"is {self.image_size}; it must be at least 1")
        if self.input_kind == "images" and (self.image_size or 0) > MAX_IMAGE_SIZE:
            raise bad("image_size", f"is {self.image_size}; at most {MAX_IMAGE_SIZE} (28 to 256 are typical)")
        if self.epochs is not None and self.epochs < 1:
            raise bad("epochs", f"is {self.epochs}; it must be at least 1 (or unset for automatic)")
        if self.patience < 0 or self.kl_warmup_epochs < 0:
            raise bad("patience", "and kl_warmup_epochs must not be negative")
        if self.beta is None:
            self.beta = 1.0
        if self.beta < 0 or self.free_bits < 0:
            raise bad("beta", f"is {self.beta} and free_bits {self.free_bits}; neither may be negative")
        if self.lr <= 0:
            raise bad("lr", f"is {self.lr}; it must be positive")
        if self.limit is not None and self.limit < 2:
            raise bad("limit", f"is {self.limit}; it must be at least 2 (or unset)")
        if self.input_kind == "images" and self.arch == "conv" and self.image_size is not None:  # last: it names the sizes that work
            from .vae.shapes import conv_depth

            conv_depth(self.image_size)  # a size the network cannot take fails here, before any data is read
        return self

    def combine_parts(self) -> list[str]:
        return [p.strip() for p in self.combine.split(",") if p.strip()]

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir or os.environ.get("ANOMALYVAE_DATA_DIR") or "data")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def auto_image_size(shapes: list[tuple[int, int]], arch: str) -> int:
    """The image side for a folder when none is given: the median shorter side of its images, rounded down to a
    multiple of 8 (at least 16), at most AUTO_IMAGE_CAP; for the global conv model, the largest size at most
    that which its network takes (vae.shapes.conv_depth)."""
    import statistics  # not numpy: the CLI's help imports this module and must stay fast

    side = int(statistics.median_low([min(h, w) for h, w in shapes])) if shapes else 28
    side = max(16, min(AUTO_IMAGE_CAP, side // 8 * 8))
    if arch == "conv":
        from .vae.shapes import fits

        side = max(s for s in range(16, side + 1) if fits(s))
    return side


def auto_epochs(n_train: int, batch_size: int, steps: int = 2300, lo: int = 6, hi: int = 30) -> int:
    """Epochs for a fixed budget of optimiser steps: measured, the latent scores want ~2,300 steps whether the
    normal data is nine MNIST digits (6 epochs) or one (30 epochs, the cap)."""
    per_epoch = max(1, -(-n_train // batch_size))
    return max(lo, min(hi, -(-steps // per_epoch)))


FEATURE_STEPS = 2000  # optimiser steps for feature vectors, whatever the table's size
FEATURE_PATIENCE_STEPS = 400  # early stopping's patience for feature vectors, in steps
EPOCH_STEPS = 20  # a small table's rows are repeated until an epoch (one validation) holds this many steps


def feature_schedule(n_train: int, batch_size: int, patience: int) -> tuple[int, int, int]:
    """(epochs, patience, repeats) for feature vectors, counted in optimiser steps: a table of 250 rows has 2
    steps an epoch, so 30 epochs were 60 steps and a patience of 5 epochs stopped it on noise after 10. Its
    rows are repeated `repeats` times per epoch, so that 2,000 steps are 100 validations, not 1,000."""
    repeats = max(1, EPOCH_STEPS * batch_size // max(1, n_train))
    per_epoch = max(1, -(-n_train * repeats // batch_size))
    return -(-FEATURE_STEPS // per_epoch), max(patience, -(-FEATURE_PATIENCE_STEPS // per_epoch)), repeats


# PyYAML follows YAML 1.1, where a float needs a dot: `1e-3` is read as the string "1e-3"
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _coerce(name: str, value: Any, hint: str) -> Any:
    """YAML gives ints where floats are meant, strings for '0-8' and for '1e-3'; accept those, refuse the rest.

    Raises ValueError with the reason; `update` names the source (the YAML file) in front of it.
    """
    optional = "None" in hint
    if value is None:
        if optional:
            return None
        raise ValueError(f"'{name}' must not be empty")
    base = hint.replace(" | None", "")
    if base == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base == "float" and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)
    if base == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if base == "bool" and isinstance(value, bool):
        return value
    if base == "str" and isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"'{name}' must be {base}, got {type(value).__name__} {value!r}")


def update(cfg: Config, values: dict[str, Any], source: str = "config") -> Config:
    """Return a copy of cfg with values applied; unknown keys and wrong types are errors naming `source`."""
    hints = {f.name: f.type for f in fields(Config)}  # strings such as "int | None" (postponed annotations)
    changes = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in hints:
            known = ", ".join(sorted(hints))
            raise AnomalyVAEError(f"{source}: unknown key '{key}'; known keys are: {known}")
        try:
            changes[name] = _coerce(name, value, hints[name])
        except ValueError as e:
            raise AnomalyVAEError(f"{source}: {e}") from None
    return dataclasses.replace(cfg, **changes)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnomalyVAEError(f"config file {p} does not exist; pass an existing YAML file to --config") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise AnomalyVAEError(f"config file {p} could not be read as YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AnomalyVAEError(f"config file {p} must hold a mapping of keys to values, not {type(data).__name__}")
    return data


def make_config(config_file: str | os.PathLike | None = None, **overrides: Any) -> Config:
    """Defaults <- YAML file <- overrides (None means 'not given'), validated."""
    cfg = Config()
    if config_file is not None:
        cfg = update(cfg, load_yaml(config_file), source=str(config_file))
    cfg = update(cfg, {k: v for k, v in overrides.items() if v is not None})
    return cfg.validate()
