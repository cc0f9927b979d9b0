"""What a run used and what it is, in the words `mlflow ui` shows: dataset inputs (name, digest, source, profile),
run names and descriptions. Torch-free and MLflow-free until a dataset becomes an MLflow entity."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.classes import format_classes, parse_classes
from ..config import IDX_DATASETS
from ..detectors.registry import title
from ..errors import DataError

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
    from ..data.datasets import SUBDIRS, locate

    if cfg.dataset == "folder":
        return {"uri": _uri(cfg.train_dir)}
    if cfg.dataset in SUBDIRS:
        try:
            images, labels = locate(cfg.dataset, cfg.resolved_data_dir(), split, download=False)
        except DataError:  # an evaluation on other data (--anomalies, folders): the files may be elsewhere
            return {"uri": _uri(cfg.resolved_data_dir())}
        return {"uri": _uri(images), "labels": _uri(labels)}
    if cfg.dataset == "mvtec":  # ROOT/train/good, ROOT/test (with ROOT/ground_truth)
        return {"uri": _uri(cfg.resolved_data_dir() / ("train/good" if split == "train" else split))}
    return {"uri": _uri(cfg.resolved_data_dir())}


# folder names that say nothing on their own: a run is named by the folder above too ('screws/train')
GENERIC_FOLDERS = frozenset({"train", "good", "normal", "ok", "images", "imgs", "img", "data", "test", "val"})


def folder_words(folder: str | Path) -> str:
    """A folder as a name: its own name, or 'parent/name' when its own name alone is generic."""
    path = Path(folder).resolve()
    if path.name.lower() in GENERIC_FOLDERS and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


def normal_words(cfg) -> str:
    """'normal 0-8' for class datasets, the folder's name for a folder of normal images, the root's name for
    an MVTec-AD root (whose normal images are train/good)."""
    if cfg.dataset == "folder":
        return folder_words(cfg.train_dir)
    if cfg.dataset == "mvtec":
        return Path(cfg.resolved_data_dir()).name
    return f"normal {format_classes(parse_classes(cfg.normal))}"


def _class_names(dataset: str, classes: list[int]) -> list[str]:
    from ..data.datasets import CLASS_NAMES

    names = CLASS_NAMES.get(dataset, [])
    return [names[c] if c < len(names) else str(c) for c in classes]


def train_inputs(cfg, train, val) -> list[DataRef]:
    """The normal training images and the held-out normal images (early stopping, threshold), as two inputs."""
    normal = parse_classes(cfg.normal) if cfg.dataset in IDX_DATASETS else []
    what = f"normal-{format_classes(normal)}" if normal else normal_words(cfg)
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


@dataclass
class TestOrigin:
    """Where an evaluation's test set came from (testsets.build's flags), in the words MLflow shows."""

    name: str  # the dataset input's name: the same task gets the same name, so models compare side by side
    source: dict[str, str]
    anomaly: str  # what the anomaly was: 'digit 9', 'scratched', 'fashion-mnist'
    # classes are folders (MVTec defect kinds, --anomaly-dir): their labels are only sorted positions, so
    # per-class metrics are keyed by name ('auroc_class_scratch'); a class dataset's labels are its classes
    named_classes: bool = False


def test_origin(cfg, normal: list[int], normal_dir: str | None = None, anomaly_dir: str | None = None,
                anomalies: str | None = None, data_dir: str | None = None) -> TestOrigin:
    """The origin of the test set `testsets.build` makes from the same flags (its docstring lists the cases)."""
    if anomaly_dir is not None:
        return TestOrigin(f"folders-{Path(normal_dir).name}-vs-{Path(anomaly_dir).name}",
                          {"uri": _uri(normal_dir), "anomalies": _uri(anomaly_dir)}, Path(anomaly_dir).name, True)
    if anomalies is not None:
        known = anomalies in IDX_DATASETS
        words = anomalies if known else Path(anomalies).name
        own = {"uri": _uri(normal_dir)} if normal_dir else _test_source(cfg, data_dir)
        own_words = f"normal-{format_classes(normal)}" if normal else normal_words(cfg).replace(" ", "-")
        return TestOrigin(f"{cfg.dataset}-{own_words}-vs-{words}",
                          {**own, "anomalies": f"{anomalies} test split" if known else _uri(anomalies)}, words)
    if cfg.dataset == "mvtec":
        root = Path(data_dir) if data_dir else cfg.resolved_data_dir()
        return TestOrigin(f"mvtec-{root.name}-test", {"uri": _uri(root / "test")}, "defects", True)
    anomalous = [c for c in range(10) if c not in normal]
    return TestOrigin(f"{cfg.dataset}-test-anomaly-{format_classes(anomalous)}", _test_source(cfg, data_dir),
                      anomaly_words(cfg, normal))


def class_key(origin: TestOrigin, row: dict) -> str:
    """How a per-class metric names its class: the folder's name, or a class dataset's label."""
    if not origin.named_classes:
        return str(row["label"])
    return re.sub(r"[^\w\-. /]", "_", str(row["class"]))  # what MLflow accepts in a metric key


def logged_normal(cfg) -> str:
    """The `normal` param as runs log it: the classes of a class dataset; for folders, where the config's
    `normal` is unused, where the normal images are (not the unused default '0-8')."""
    if cfg.dataset in IDX_DATASETS:
        return format_classes(parse_classes(cfg.normal))
    return "train/good" if cfg.dataset == "mvtec" else "every image in the folder"


def _test_source(cfg, data_dir: str | None) -> dict[str, str]:
    import dataclasses

    return source(dataclasses.replace(cfg, data_dir=data_dir) if data_dir else cfg, "test")


def anomaly_words(cfg, normal: list[int]) -> str:
    """What counts as the anomaly in a class dataset's test split: 'digit 9', 'digits 0-7', 'Ankle boot'."""
    anomalous = [c for c in range(10) if c not in normal]
    if cfg.dataset == "mnist":
        return f"digit{'s' * (len(anomalous) > 1)} {format_classes(anomalous)}"
    if len(anomalous) == 1:
        return _class_names(cfg.dataset, anomalous)[0]
    return f"classes {format_classes(anomalous)}"


def test_input(test, y_true, normal: list[int], origin: TestOrigin) -> DataRef:
    """The labelled test set an evaluation ran on, as an MLflow dataset input named by its origin."""
    import numpy as np

    y = np.asarray(y_true, dtype=np.uint8)
    profile = {"images": int(len(y)), "anomalies": int(y.sum()), "normal": int(len(y) - y.sum()),
               "anomaly": origin.anomaly}
    if normal:
        profile["normal_classes"] = format_classes(normal)
    return DataRef(origin.name, digest(test.images, y), origin.source, profile, EVALUATION,
                   list(test.images.shape[1:]), str(test.images.dtype).replace("torch.", ""))


def kind(cfg) -> str:
    """What names call the model: the detector's name ('local', 'compare'), or for the global VAE its
    architecture ('conv', 'mlp'), with '-labels' for one that learnt the normal classes' labels (use_labels)."""
    if cfg.input_kind == "images" and cfg.detector != "global":
        return cfg.detector
    return cfg.arch + ("-labels" if getattr(cfg, "use_labels", False) else "")


def model_name(cfg) -> str:
    """The logged model's name, by what it learned as the runs are: 'mnist-normal-0-8-conv',
    'folder-screws-train-conv' (MLflow takes letters, digits, '-' and '_' in a LoggedModel's name)."""
    what = normal_words(cfg).replace(",", "_")
    return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{cfg.dataset}-{what}-{kind(cfg)}").strip("-")


# MLflow's runs table shows about 24 characters of a run's name: names say what was learned in that much
# ('train mnist 0-8'), and the tag DETAIL and the description say the rest (architecture, limit, seed, folder)
DETAIL = "anomalyvae.detail"
NAME_CHARS = 24


def subject(cfg) -> str:
    """What a run's name says the model learned: 'mnist 0-8', 'screws/train' (a folder of normal images),
    'mvtec bottle' (an MVTec-AD root)."""
    if cfg.dataset == "folder":
        return folder_words(cfg.train_dir)
    if cfg.dataset == "mvtec":
        return f"mvtec {Path(cfg.resolved_data_dir()).name}"
    return f"{cfg.dataset} {format_classes(parse_classes(cfg.normal))}"


def train_run_name(cfg) -> str:
    """e.g. 'train mnist 0-8': short enough for the runs table; train_detail tells repeated trainings apart."""
    return f"train {subject(cfg)}"


def train_detail(cfg, model_dir: str | Path | None = None) -> str:
    """e.g. 'mnist normal 0-8 conv, limit 300, seed 1 -> small' (the run's DETAIL tag): what was learned, then
    what tells repeated trainings of it apart: a partial dataset, another seed, and the model folder (its time
    stamp for the default folder name)."""
    detail = f"{cfg.dataset} {normal_words(cfg)} {kind(cfg)}"
    if cfg.limit is not None:
        detail += f", limit {cfg.limit}"
    if cfg.seed != 0:
        detail += f", seed {cfg.seed}"
    if model_dir is not None:
        folder = Path(model_dir).name
        stamp = re.fullmatch(r".*-(\d{8}-\d{6})", folder)  # pipeline.default_out's name ends in its time
        detail += f" ({stamp.group(1)})" if stamp else f" -> {folder}"
    return detail


def train_description(cfg, n_train: int, n_val: int, model_dir: Path) -> str:
    if cfg.dataset == "folder":
        what = f"the images in `{cfg.train_dir}`"
    elif cfg.dataset == "mvtec":
        what = f"the MVTec-AD folder `{cfg.resolved_data_dir()}` (its train/good images)"
    else:
        what = f"{cfg.dataset} classes {format_classes(parse_classes(cfg.normal))}"
    model = title(cfg)
    if getattr(cfg, "use_labels", False):
        model += " that also learns the normal classes' labels"
    subset = f", --limit {cfg.limit}" if cfg.limit is not None else ""
    return (f"Trains a {model} on {what}: {n_train:,} normal images, {n_val:,} more held out for early "
            f"stopping and the threshold (target false-positive rate {cfg.fpr}). Default score `{cfg.score}`. "
            f"Seed {cfg.seed}{subset}. Model directory: `{model_dir}`.")


def evaluate_run_name(cfg) -> str:
    """e.g. 'evaluate mnist 0-8': its AUROC is a column of the runs table, the anomaly in evaluate_detail."""
    return f"evaluate {subject(cfg)}"


def evaluate_detail(cfg, anomaly: str) -> str:
    """e.g. 'mnist normal 0-8 conv on digit 9' (the evaluate run's DETAIL tag)."""
    return f"{train_detail(cfg)} on {anomaly}"


def train_outcome(det, model_link: str | None) -> str:
    """What the training ended with, appended to its description once the model is saved."""
    i = det.info_
    model = f" Logged model: [{model_name(det.config_)}]({model_link})." if model_link else ""
    return (f"Done: best epoch {i['best_epoch']} of {i['epochs_run']} ({i['train_seconds']:.0f} s); threshold "
            f"{det.threshold_:.3f} on `{det.score_}` flags {i['val_fpr']:.1%} of the held-out normal images.{model}")


def evaluate_description(cfg, det, result: dict, data: DataRef, anomaly: str, train_link: str | None,
                         model_link: str | None, report_link: str) -> str:
    what = (f"the model trained by [{train_run_name(cfg)}]({train_link}) ({train_detail(cfg)})" if train_link
            else f"the model ({train_detail(cfg)}) in `{result.get('model_dir')}`")
    model = f" ([logged model]({model_link}))" if model_link else ""
    return (f"Evaluates {what}{model} on `{data.name}`: {result['n_test']:,} test images, "
            f"{result['n_anomalies']:,} of them anomalous ({anomaly}).\n\n"
            f"Score `{result['score']}`: AUROC {result['auroc']:.3f}, AUPRC {result['auprc']:.3f}. At the threshold "
            f"{det.threshold_:.3f} (calibrated on held-out normal images): F1 {result['f1']:.3f}, precision "
            f"{result['precision']:.3f}, recall {result['recall']:.3f}, FPR {result['fpr']:.3f} on the test normals."
            "\n\nFigures: ROC, precision-recall, histogram and the most anomalous images under Model metrics "
            f"(section `figures`); everything in one page: [the evaluation report]({report_link}).")
