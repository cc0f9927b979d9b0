"""What a run used and what it is, in the words `mlflow ui` shows: dataset inputs (name, digest, source, profile),
run names and descriptions. Torch-free and MLflow-free until a dataset becomes an MLflow entity."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .classes import format_classes, parse_classes

# What MLflow's dataset inputs call the role of each one (mlflow.data.context): the run page shows it as a badge.
TRAINING, VALIDATION, EVALUATION = "training", "validation", "evaluation"


@dataclass
class DataRef:
    """One dataset as MLflow records it: `digest` fingerprints the exact arrays used (classes, --limit, split)."""

    name: str
    digest: str
    source: dict[str, str]  # {"uri": file URI of the images (or folder), ...} for MLflow's "local" source type
    profile: dict[str, Any]
    context: str
    shape: list[int] = field(default_factory=list)  # one input's shape, e.g. [1, 28, 28]
    dtype: str = "uint8"

    def entity(self):
        """MLflow's Dataset entity (what `mlflow.log_metrics(dataset=...)` and `log_inputs` take)."""
        import numpy as np
        from mlflow.data.schema import TensorDatasetSchema
        from mlflow.entities import Dataset
        from mlflow.types import Schema, TensorSpec

        schema = TensorDatasetSchema(
            Schema([TensorSpec(np.dtype(self.dtype), (-1, *self.shape), "inputs")]),
            Schema([TensorSpec(np.dtype("int64"), (-1,), "labels")]))
        return Dataset(name=self.name, digest=self.digest, source_type="local", source=json.dumps(self.source),
                       schema=json.dumps(schema.to_dict()), profile=json.dumps(self.profile))


def digest(*tensors) -> str:
    """sha256 of the arrays' bytes, 8 hex digits as MLflow's own datasets use: 30 ms for MNIST's 54k images."""
    h = hashlib.sha256()
    for t in tensors:
        a = t.contiguous().numpy() if hasattr(t, "numpy") else t
        h.update(str(tuple(a.shape)).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:8]


def _uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def source(cfg, split: str) -> dict[str, str]:
    """Where the data came from: the IDX files of the split, the folder of images, or the dataset's root."""
    from .data import SUBDIRS, locate

    if cfg.dataset == "folder":
        return {"uri": _uri(cfg.train_dir)}
    if cfg.dataset in SUBDIRS:
        images, labels = locate(cfg.dataset, cfg.resolved_data_dir(), split, download=False)
        return {"uri": _uri(images), "labels": _uri(labels)}
    return {"uri": _uri(cfg.resolved_data_dir())}


def normal_words(cfg) -> str:
    """'normal 0-8' for class datasets, the folder's name for a folder of normal images."""
    if cfg.dataset == "folder":
        return Path(cfg.train_dir).name
    return f"normal {format_classes(parse_classes(cfg.normal))}"


def _class_names(dataset: str, classes: list[int]) -> list[str]:
    from .data import CLASS_NAMES

    names = CLASS_NAMES.get(dataset, [])
    return [names[c] if c < len(names) else str(c) for c in classes]


def train_inputs(cfg, train, val) -> list[DataRef]:
    """The normal training images and the held-out normal images (early stopping, threshold), as two inputs."""
    normal = [] if cfg.dataset == "folder" else parse_classes(cfg.normal)
    what = Path(cfg.train_dir).name if cfg.dataset == "folder" else f"normal-{format_classes(normal)}"
    common = {"normal_classes": format_classes(normal) if normal else "every image in the folder",
              "normal_class_names": ", ".join(_class_names(cfg.dataset, normal)) if normal else "",
              "train_images": len(train), "held_out_images": len(val), "seed": cfg.seed, "limit": cfg.limit}
    src = source(cfg, "train")
    shape = list(train.images.shape[1:])
    dtype = str(train.images.dtype).replace("torch.", "")
    return [DataRef(f"{cfg.dataset}-train-{what}", digest(train.images, train.labels), src,
                    {"images": len(train), **common}, TRAINING, shape, dtype),
            DataRef(f"{cfg.dataset}-heldout-{what}", digest(val.images, val.labels), src,
                    {"images": len(val), **common}, VALIDATION, shape, dtype)]


def anomaly_words(cfg, normal: list[int], folders: tuple[str, str] | None = None) -> str:
    """What counts as the anomaly in an evaluation: 'digit 9', 'digits 0-7', 'Ankle boot', or a folder's name."""
    if folders is not None:
        return Path(folders[1]).name
    anomalous = [c for c in range(10) if c not in normal]
    if cfg.dataset == "mnist":
        return f"digit{'s' * (len(anomalous) > 1)} {format_classes(anomalous)}"
    if len(anomalous) == 1:
        return _class_names(cfg.dataset, anomalous)[0]
    return f"classes {format_classes(anomalous)}"


def test_input(cfg, test, y_true, normal: list[int], folders: tuple[str, str] | None = None) -> DataRef:
    """The labelled test set an evaluation ran on; its name says what the anomaly was, so the models table
    puts metrics of the same task side by side."""
    import numpy as np

    if folders is not None:
        name = f"folders-{Path(folders[0]).name}-vs-{Path(folders[1]).name}"
        src = {"uri": _uri(folders[0]), "anomalies": _uri(folders[1])}
    else:
        anomalous = [c for c in range(10) if c not in normal]
        name = f"{cfg.dataset}-test-anomaly-{format_classes(anomalous)}"
        src = source(cfg, "test")
    y = np.asarray(y_true, dtype=np.uint8)
    profile = {"images": int(len(y)), "anomalies": int(y.sum()), "normal": int(len(y) - y.sum()),
               "anomaly": anomaly_words(cfg, normal, folders)}
    if folders is None:
        profile["normal_classes"] = format_classes(normal)
    return DataRef(name, digest(test.images, y), src, profile, EVALUATION, list(test.images.shape[1:]),
                   str(test.images.dtype).replace("torch.", ""))


def train_run_name(cfg) -> str:
    """e.g. 'train mnist normal 0-8 conv'."""
    return f"train {cfg.dataset} {normal_words(cfg)} {cfg.arch}"


def train_description(cfg, n_train: int, n_val: int, model_dir: Path) -> str:
    what = (f"the images in `{cfg.train_dir}`" if cfg.dataset == "folder"
            else f"{cfg.dataset} classes {format_classes(parse_classes(cfg.normal))}")
    return (f"Trains a {cfg.arch} VAE on {what}: {n_train:,} normal images, {n_val:,} more held out for early "
            f"stopping and the threshold (target false-positive rate {cfg.fpr}). Default score `{cfg.score}`. "
            f"Model directory: `{model_dir}`.")


def evaluate_run_name(cfg, anomaly: str, auroc: float | None = None) -> str:
    """e.g. 'evaluate mnist normal 0-8 conv on digit 9: AUROC 0.80'."""
    head = f"evaluate {cfg.dataset} {normal_words(cfg)} {cfg.arch} on {anomaly}"
    return head if auroc is None else f"{head}: AUROC {auroc:.2f}"


def train_outcome(det, model_link: str | None) -> str:
    """What the training ended with, appended to its description once the model is saved."""
    i = det.info_
    model = f" Logged model: [detector]({model_link})." if model_link else ""
    return (f"Done: best epoch {i['best_epoch']} of {i['epochs_run']} ({i['train_seconds']:.0f} s); threshold "
            f"{det.threshold_:.3f} on `{det.score_}` flags {i['val_fpr']:.1%} of the held-out normal images.{model}")


def evaluate_description(cfg, det, result: dict, data: DataRef, anomaly: str, train_link: str | None,
                         model_link: str | None, report_link: str) -> str:
    what = (f"the model trained by [{train_run_name(cfg)}]({train_link})" if train_link
            else f"the model in `{result.get('model_dir')}`")
    model = f" ([logged model]({model_link}))" if model_link else ""
    return (f"Evaluates {what}{model} on `{data.name}`: {result['n_test']:,} test images, "
            f"{result['n_anomalies']:,} of them anomalous ({anomaly}).\n\n"
            f"Score `{result['score']}`: AUROC {result['auroc']:.3f}, AUPRC {result['auprc']:.3f}. At the threshold "
            f"{det.threshold_:.3f} (calibrated on held-out normal images): F1 {result['f1']:.3f}, precision "
            f"{result['precision']:.3f}, recall {result['recall']:.3f}, FPR {result['fpr']:.3f} on the test normals."
            "\n\nFigures: ROC, precision-recall, histogram and the most anomalous images under Model metrics "
            f"(section `figures`); everything in one page: [the evaluation report]({report_link}).")
