"""A trained detector: network + scoring state + threshold, and the model directory that holds all of it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .config import Config, update
from .errors import ModelDirError
from .modeldir import MODEL_FILE, atomic_write_bytes, read_tensors, write_tensors
from .device import resolve as resolve_device
from .model import build_model
from .runtime import set_threads
from .scoring import ALL_SCORES, ScoreState, score_images
from .threshold import flag

PREPROCESSING = {
    "input": "uint8 grayscale, light strokes on dark background",
    "to_model": "x = pixel / 255, shape (1, image_size, image_size)",
    "files": "Pillow decode -> grayscale (RGB by ITU-R 601 luma, alpha dropped, 16-bit / 257) "
             "-> bilinear resize to image_size x image_size, aspect ratio ignored",
}


@dataclass
class Detector:
    """Use from Python like the CLI does: `Detector.load(dir).predict(images)`.

    `threshold_` is calibrated on held-out normal data for `config.fpr`; `score_` names the score it applies to.
    """

    config: Config
    model: nn.Module
    state: ScoreState
    threshold_: float
    info: dict[str, Any] = field(default_factory=dict)  # normal classes, sizes, timings, validation figures

    @property
    def score_(self) -> str:
        return self.config.score

    def score_samples(self, images: torch.Tensor, which=ALL_SCORES) -> dict[str, np.ndarray]:
        """The scores named in `which` for uint8 images (N, H, W); higher means more anomalous."""
        return score_images(self.model, images, self.state, self.config, which)

    def decision_function(self, images: torch.Tensor) -> np.ndarray:
        return self.score_samples(images, which=(self.score_,))[self.score_]

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """True where an image is flagged as an anomaly."""
        return flag(self.decision_function(images), self.threshold_)

    # -- the model directory ------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "anomalyvae_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "config": self.config.to_dict(),
            "preprocessing": PREPROCESSING,
            "score": self.score_,
            "threshold": self.threshold_,
            "score_mean": self.state.mean,
            "score_std": self.state.std,
            "info": self.info,
        }

    def save(self, out: str | Path) -> Path:
        """Write model.safetensors (authoritative) and model.json (a readable copy) into `out`."""
        out = Path(out)
        meta = self.metadata()
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"score.{k}": v for k, v in self.state.tensors().items()})
        write_tensors(out / MODEL_FILE, tensors, meta)
        atomic_write_bytes(out / "model.json", json.dumps(meta, indent=2).encode())
        return out

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "Detector":
        """Read a model directory (or its model.safetensors) as data, onto `device` (a Config.device value)."""
        path = Path(path)
        if not path.exists():
            raise ModelDirError(f"model {path} does not exist; train one (anomalyvae train) or pass --model DIR")
        file = path / MODEL_FILE if path.is_dir() else path
        tensors, meta = read_tensors(file)
        try:
            # where it was trained does not matter: it runs where it is loaded
            cfg = update(Config(), {**meta["config"], "device": device}, source=f"{file} config").validate()
            model = build_model(cfg)
            weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
            model.load_state_dict(weights, strict=True)
            state = ScoreState(
                gmm_log_weights=tensors.get("score.gmm_log_weights"),
                gmm_means=tensors.get("score.gmm_means"),
                gmm_prec_chol=tensors.get("score.gmm_prec_chol"),
                codes=tensors.get("score.codes"),
                mean=dict(meta["score_mean"]),
                std=dict(meta["score_std"]),
            )
            det = cls(cfg, model.to(resolve_device(device)).eval(), state, float(meta["threshold"]),
                      dict(meta.get("info", {})))
            set_threads(cfg.threads)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelDirError(f"{file}: incomplete model metadata ({e}); re-train the model") from None
        except RuntimeError as e:  # load_state_dict: missing/unexpected keys or shape mismatch
            first = str(e).splitlines()
            raise ModelDirError(
                f"{file}: weights do not fit a '{meta['config'].get('arch')}' model ({' '.join(first[1:2] or first)[:160].strip()})"
            ) from None
        return det

    def with_config(self, **changes) -> "Detector":
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **changes))


def latest_model(root: str | Path = "models") -> Path:
    """The most recently written model directory under `root`: what evaluate and score use by default."""
    root = Path(root)
    found = sorted(root.glob(f"*/{MODEL_FILE}"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not found:
        raise ModelDirError(f"no trained model under {root}/; run `anomalyvae train` first or pass --model DIR")
    return found[-1].parent
