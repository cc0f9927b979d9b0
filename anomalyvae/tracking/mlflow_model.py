"""The detector as an MLflow pyfunc model, so anything that speaks MLflow can load, serve or Spark-map it.

The MLflow model holds no pickle: its code is `pyfunc_code.py` (MLflow's "models from code") and its one
artifact is a model directory (model.safetensors + model.json), loaded with `AnomalyVAE.load` as data.
Input: uint8 pixels, one flattened image_size x image_size image per row (a numpy array, a DataFrame of
784 columns, a JSON {"inputs": [[...]]} request or a Spark array column). Output: one row per image with
the detector's scores and `is_anomaly`. A model trained on a table (`anomalyvae train --table`) takes a DataFrame
with the training columns instead, by name and in any order (tables.py's rule; a missing one is refused).
The environment that loads it needs anomalyvae installed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from ..estimator import AnomalyVAE
from ..modeldir import MODEL_FILE
from ..data.preflight import is_model_uri

CODE_FILE = Path(__file__).with_name("pyfunc_code.py")


def output_scores(det: AnomalyVAE) -> tuple[str, ...]:
    """The scores a prediction returns: the cheap ones plus the model's own (iwae only when it is the default)."""
    return det.default_scores()


class AnomalyVAEModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: load_context reads the model directory, predict scores flattened uint8 images."""

    # The explicit signature (see `signature`) is what MLflow enforces; this keeps MLflow from inspecting
    # predict's type hints and warning, on every import, that there are none.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        # a serving host picks its device: ANOMALYVAE_DEVICE=cpu keeps a GPU free for other work
        self.detector = AnomalyVAE.load(context.artifacts["model_dir"], os.environ.get("ANOMALYVAE_DEVICE", "auto"))

    def predict(self, context, model_input, params=None):
        return predict_frame(self.detector, model_input)


def predict_frame(det: AnomalyVAE, model_input: Any) -> pd.DataFrame:
    """One row per image: each score in `output_scores` and is_anomaly (score > the calibrated threshold)."""
    which = output_scores(det)
    if isinstance(model_input, dict) and len(model_input) == 1:  # a named tensor: {"pixels": array}
        model_input = next(iter(model_input.values()))
    if getattr(det, "table_", None) is not None:
        values = det.table_.transform(pd.DataFrame(model_input))
    else:
        values = model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else np.asarray(model_input)
    scores = det.anomaly_scores(values, which=which)
    frame = pd.DataFrame({name: scores[name] for name in which})
    frame["is_anomaly"] = scores[det.score_] > det.threshold_
    return frame


def signature(det: AnomalyVAE):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    d = int(np.prod(det.input_shape_))
    dtype = np.uint8 if det.config_.input_kind == "images" else np.float32
    inputs = Schema([TensorSpec(np.dtype(dtype), (-1, d))])
    if getattr(det, "table_", None) is not None:  # columns by name; MLflow refuses a request without one
        inputs = Schema([ColSpec(det.table_.types.get(c, "double"), c) for c in det.table_.columns])
    outputs = Schema([ColSpec("double", s) for s in output_scores(det)] + [ColSpec("boolean", "is_anomaly")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def requirements() -> list[str]:
    """Pinned to what trained the model; anomalyvae itself must be installed beside them (not on PyPI)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "torch", "numpy", "pandas", "safetensors", "scikit-learn")]


def log_model(model_dir: str | Path, example: np.ndarray | None = None, registered_model_name: str | None = None,
              name: str | None = None):
    """Log the model directory as a pyfunc model in the active run; returns MLflow's ModelInfo.

    Named by what it learned unless `name` is given (runs:/<run_id>/mnist-normal-0-8-conv). Only
    model.safetensors and model.json are packaged (not the training checkpoint or evaluation plots).
    """
    from .lineage import model_name

    model_dir = Path(model_dir)
    det = AnomalyVAE.load(model_dir)
    if getattr(det, "table_", None) is not None and name is None:  # named by its table: 'table-normal-mlp'
        import re

        name = re.sub(r"[^A-Za-z0-9_-]+", "-", f"table-{Path(det.info_.get('table', 'rows')).stem}-mlp")
    name = name or model_name(det.config_)
    d = int(np.prod(det.input_shape_))
    dtype = np.uint8 if det.config_.input_kind == "images" else np.float32
    if getattr(det, "table_", None) is not None:
        example = example if isinstance(example, pd.DataFrame) else None
    else:
        example = np.zeros((2, d), dtype) if example is None else np.asarray(example, dtype).reshape(-1, d)
    with tempfile.TemporaryDirectory(prefix="anomalyvae-pyfunc-") as tmp:
        staged = Path(tmp) / model_dir.name
        staged.mkdir()
        for f in (MODEL_FILE, "model.json"):
            if (model_dir / f).exists():
                shutil.copy2(model_dir / f, staged / f)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(CODE_FILE),
            artifacts={"model_dir": str(staged)},
            signature=signature(det),
            input_example=example,
            pip_requirements=requirements(),
            registered_model_name=registered_model_name,
            metadata={"anomalyvae_score": det.score_, "anomalyvae_threshold": det.threshold_},
            model_type="anomaly-detector",  # the LoggedModel's type in MLflow
        )


def load_detector(ref: str | Path, tracking_uri: str | None = None, device: str = "auto") -> AnomalyVAE:
    """A local model directory or file, or any MLflow artifact URI that holds one (a logged pyfunc model,
    a registered version, or the run's raw `model/` folder): downloaded to a temporary folder, loaded as data."""
    if not is_model_uri(ref):
        return AnomalyVAE.load(ref, device)
    from ..errors import ModelDirError

    with tempfile.TemporaryDirectory(prefix="anomalyvae-download-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=str(ref), dst_path=tmp,
                                                             tracking_uri=tracking_uri))
        except Exception as e:
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise ModelDirError(f"could not download {ref} from MLflow ({first}); check the URI and "
                                "--tracking-uri / MLFLOW_TRACKING_URI") from None
        found = [local] if local.is_file() else sorted(local.rglob(MODEL_FILE), key=lambda p: len(p.parts))
        if not found:
            raise ModelDirError(f"{ref} holds no {MODEL_FILE}; is it an anomalyvae model?")
        return AnomalyVAE.load(found[0], device)
