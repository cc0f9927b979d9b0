"""--resume continues the training a checkpoint holds, with the configuration that training was started with.

Every checkpoint stores its resolved Config (train.py). Resuming takes it whole, so the hint an interrupted
training prints (`anomalyvae train --resume --out DIR`) works as it stands. A setting given again, as a flag
or a --config key, must agree with it, except those in MAY_CHANGE: how long to train, where the job runs and
is logged, and how the threshold is calibrated once training ends. Any other difference would quietly
continue one training as another (a 0-8 checkpoint trained on digit 3), so it is refused before anything
is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..data.classes import parse_classes
from ..config import Config, load_yaml, update
from ..errors import AnomalyVAEError, ModelDirError

MAY_CHANGE = {
    "epochs": "train longer (or stop sooner) than first planned",
    "patience": "how many epochs without improvement early stopping waits",
    "device": "where the job runs", "threads": "where the job runs",
    "data_dir": "where the same dataset's files lie now",
    "tracking_uri": "the MLflow server",
    # used only after training, to score and calibrate
    "score": "calibration", "combine": "calibration", "fpr": "calibration", "contamination": "calibration",
    "knn_k": "calibration", "latent_components": "calibration", "iwae_samples": "calibration",
}


def saved_config(out: str | os.PathLike) -> Config:
    """The configuration the interrupted training in `out` was started with."""
    from ..modeldir import CHECKPOINT_FILE, read_tensors  # here: the CLI's --help reads MAY_CHANGE without torch

    ckpt = Path(out) / CHECKPOINT_FILE
    if not ckpt.is_file():
        raise AnomalyVAEError(f"--resume: no checkpoint in {out}; pass --out with the folder of an interrupted "
                              "training, or drop --resume to start a new one")
    _, meta = read_tensors(ckpt)
    if "config" not in meta:
        raise ModelDirError(f"{ckpt} was written by an older anomalyvae and holds no configuration to resume "
                            "with; train again without --resume")
    return update(Config(), meta["config"], source=f"{ckpt} config")


def _same(name: str, a: Any, b: Any) -> bool:
    if name == "normal" and a != b:  # 0-8 and 0,1,2,3,4,5,6,7,8 are the same classes
        try:
            return parse_classes(a) == parse_classes(b)
        except AnomalyVAEError:
            return False
    return a == b


def check(out: str | os.PathLike, cfg: Config) -> dict[str, tuple[Any, Any]]:
    """Refuse a config that contradicts the checkpoint in `out`; return what it changes, {name: (old, new)}."""
    saved = saved_config(out)
    for name, old in saved.to_dict().items():
        new = getattr(cfg, name)
        if name not in MAY_CHANGE and not _same(name, old, new):
            raise AnomalyVAEError(
                f"--resume: {out} was trained with {name}={old!r}, not {new!r}; drop that setting to continue "
                f"this training (it keeps its own), or train a new model without --resume")
    return {name: (old, getattr(cfg, name)) for name, old in saved.to_dict().items() if old != getattr(cfg, name)}


def resume_config(out: str | os.PathLike | None, config_file: str | os.PathLike | None = None,
                  **overrides: Any) -> Config:
    """The checkpoint's configuration with the settings given again (YAML file, then flags; None = not given)."""
    if out is None:
        raise AnomalyVAEError("--resume needs --out DIR, the folder of the interrupted training")
    saved = saved_config(out)
    cfg = saved
    if config_file is not None:
        cfg = update(cfg, load_yaml(config_file), source=str(config_file))
    cfg = update(cfg, {k: v for k, v in overrides.items() if v is not None}).validate()
    check(out, cfg)
    return cfg


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changes.items())
