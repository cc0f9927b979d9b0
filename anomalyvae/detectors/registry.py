"""The one registry of detectors: which module fits and scores each kind of input, and the scores it computes.

Torch-free, as `scores.py` is, so that config validation and the CLI's help read it without importing torch.
A detector is a module of `anomalyvae.detectors` with the same few functions (see `Detector` below); the
estimator picks one from its Config (`lookup`) and delegates fitting, scoring, maps and explanations to it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Detector:
    """One detector of the registry.

    Its module defines: `train(cfg, train, val, **hooks) -> (FitResult, cfg, extra)` (the network),
    `fit_state(model, cfg, train, val, extra) -> state` (what it keeps besides the network: a dataclass with
    `tensors()`, `meta()` and `from_saved(tensors, meta)`, stored in the model file), `build(cfg, shape,
    tensors) -> network` (for loading), `score_batch(model, raw, state, cfg, which, precision)` (its scores of
    one batch), and, where it has them, `maps_and_recons(model, state, images)` and `explain(...)`.
    A detector whose inputs are not independent samples (a series: windows need their neighbours) also has
    `split(cfg, data) -> (train, val)` (its hold-out), `score_inputs(model, raw, state, cfg, which)` (the scores
    of a whole input) and `held_out_scores(estimator, val, which)` (the scores the threshold is set on).
    """

    name: str  # Config.detector, as the model file stores it
    inputs: str  # Config.input_kind it reads
    module: str  # under anomalyvae.detectors
    help: str
    scores: tuple[str, ...]  # what it computes (scores.py describes each); "class" only with use_labels
    title: str = ""  # what its network is, in names and summaries; "" for the global VAE: its architecture's
    peak: str = "peak"  # the score that is each image's anomaly-map maximum (images)
    channels: int | None = None  # the image channels it always works in; None: the data's

    def load(self) -> ModuleType:
        return importlib.import_module(f"anomalyvae.detectors.{self.module}")


DETECTORS: tuple[Detector, ...] = (
    Detector("global", "images", "whole", "one VAE of whole images: class datasets",
             ("recon", "elbo", "iwae", "blur", "peak", "latent", "knn", "hknn", "class", "combined")),
    Detector("local", "images", "local", "a VAE of image patches with a memory bank of their normal codes: "
             "photos (the default for folders)", ("local",),
             title="local patch VAE (memory bank of normal patches)", peak="local"),
    Detector("compare", "images", "compare", "a restoring VAE and a learned comparison trained on made "
             "defects: textures", ("compare",), title="compare (restoring VAE + learned comparison)", peak="compare", channels=3),
    Detector("global", "features", "rows", "one VAE of table rows with a memory bank of the normal rows",
             ("recon", "elbo", "iwae", "latent", "knn", "xknn", "class", "combined")),
    Detector("windows", "series", "series", "a Donut-style VAE of sliding windows of a time series, a score per "
             "timestamp (missing points masked)", ("recon", "knn", "combined")),
)
NAMES: tuple[str, ...] = tuple(dict.fromkeys(d.name for d in DETECTORS))
"""The names Config.detector takes besides "auto"."""
CHOICES: tuple[str, ...] = ("auto", *NAMES)


def lookup(input_kind: str, name: str) -> Detector:
    """The detector of that name for that input kind; a one-line error naming those that exist."""
    for d in DETECTORS:
        if d.name == name and d.inputs == input_kind:
            return d
    ok = [d.name for d in DETECTORS if d.inputs == input_kind]
    raise ValueError(f"no {name!r} detector for {input_kind}; choose from {', '.join(ok)}")


def of(cfg) -> Detector:
    """The detector a resolved Config names."""
    return lookup(cfg.input_kind, cfg.detector)


def own_channels(name: str) -> int | None:
    """The image channels the detector of that name always works in (None: the data's, or unknown)."""
    return next((d.channels for d in DETECTORS if d.name == name and d.inputs == "images"), None)


def title(cfg) -> str:
    """What a model's network is, in words: the detector's title, or the global VAE's architecture."""
    return of(cfg).title or f"{cfg.arch} VAE"


def image_help() -> str:
    """The detectors of images as the CLI's --detector help lists them."""
    return "; ".join(f"{d.name}: {d.help}" for d in DETECTORS if d.inputs == "images")
