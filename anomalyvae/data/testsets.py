"""What `evaluate` tests a model on, chosen from its dataset and the flags, as one labelled TestSet.

- mnist / fashion-mnist: the test split; classes trained as normal are normal, the others anomalies.
- mvtec: ROOT/test (ROOT from --data-dir, else the one the model was trained on) with its ground-truth masks.
- --normal-dir / --anomaly-dir (and --mask-dir): flat folders, for any model.
- --anomalies NAME|DIR: another dataset's test split (every class) or a folder of images is the anomaly; the
  normal images are the model's own dataset's normal test images (its normal classes, test/good, or
  --normal-dir for a folder-trained model).
Every image is converted to the model's size and channels (images.py says how); `notes` collects the kinds
of conversion made, for the caller to report once.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..config import IDX_DATASETS, Config
from ..errors import AnomalyVAEError, DataError
from .layouts import TestSet, folder_items, folder_test, load_test_set, mvtec_test


def build(det, data_dir: str | None = None, normal_dir: str | None = None, anomaly_dir: str | None = None,
          mask_dir: str | None = None, anomalies: str | None = None, notes: set[str] | None = None) -> TestSet:
    """The test set for a fitted AnomalyVAE `det`, per the flags (see the module's docstring)."""
    c, size = det.input_shape_[0], det.input_shape_[-1]
    cfg = dataclasses.replace(det.config_, channels=c, image_size=size)  # what the network takes, whatever the config
    normal_classes = list(det.info_.get("normal_classes", []))
    if anomalies is not None and anomaly_dir is not None:
        raise AnomalyVAEError("--anomalies and --anomaly-dir both name the anomalies; pass one of them")
    if anomaly_dir is not None or (normal_dir is not None and anomalies is None):
        if normal_dir is None or anomaly_dir is None:
            raise AnomalyVAEError("--normal-dir and --anomaly-dir go together; pass both (or --anomalies NAME|DIR)")
        test = load_test_set(folder_test(normal_dir, anomaly_dir, mask_dir), cfg.image_size, cfg.channels, notes)
    elif mask_dir is not None:
        raise AnomalyVAEError("--mask-dir goes with --normal-dir and --anomaly-dir (MVTec-AD roots bring their "
                              "own ground_truth/ folder)")
    elif anomalies is not None:
        normal = own_normal(cfg, normal_classes, data_dir, normal_dir, notes)
        test = with_anomalies(normal, other(anomalies, cfg, data_dir, notes), anomalies)
    elif cfg.dataset == "mvtec":
        root = Path(data_dir) if data_dir else cfg.resolved_data_dir()
        test = load_test_set(mvtec_test(root), cfg.image_size, cfg.channels, notes)
    elif cfg.dataset == "folder":
        raise DataError("a folder-trained model has no test split; pass --normal-dir and --anomaly-dir "
                        "(optionally --mask-dir), or --normal-dir and --anomalies NAME|DIR")
    else:
        test = idx_test(cfg, normal_classes, data_dir)
        if not test.anomalous.any():
            raise DataError(f"the model was trained on every class of {cfg.dataset}, so its test split has no "
                            f"anomalies; pass --anomalies with another dataset ({', '.join(_others(cfg))}) or a folder")
    if test.anomalous.all() or not test.anomalous.any():
        raise DataError("the test set needs both normal and anomalous images to be evaluated")
    if notes is not None:
        note_sizes(det, test, notes)
    return test


def note_sizes(det, test: TestSet, notes: set[str]) -> None:
    """Add images.other_size_note to `notes` when a test file's own size is none of the training files' (a model
    trained on files of more sizes than datasets.SIZES_KEPT, or on a class dataset, has no usual size)."""
    from .images import other_size_note

    trained = [tuple(s) for s in det.info_.get("file_sizes") or []]
    odd = next(((w, h) for h, w in test.shapes or [] if (w, h) not in trained), None)
    if trained and odd is not None:
        notes.add(other_size_note(odd, trained, det.input_shape_[-1]))


def _others(cfg: Config) -> list[str]:
    return [d for d in IDX_DATASETS if d != cfg.dataset]


def idx_test(cfg: Config, normal_classes: list[int], data_dir: str | None = None) -> TestSet:
    from .datasets import CLASS_NAMES, load_test, with_channels

    split = load_test(cfg.dataset, Path(data_dir) if data_dir else cfg.resolved_data_dir(), cfg.image_size)
    labels = split.labels.numpy()
    images = with_channels(split.images, cfg.channels).numpy()
    return TestSet(images, labels, list(CLASS_NAMES[cfg.dataset]), ~np.isin(labels, normal_classes))


def own_normal(cfg: Config, normal_classes: list[int], data_dir: str | None, normal_dir: str | None,
               notes: set[str] | None) -> TestSet:
    """The normal images of the model's own test split (or --normal-dir)."""
    if normal_dir is not None:
        return load_test_set(folder_items(normal_dir), cfg.image_size, cfg.channels, notes)
    if cfg.dataset == "mvtec":
        root = Path(data_dir) if data_dir else cfg.resolved_data_dir()
        return load_test_set([i for i in mvtec_test(root) if not i.is_anomaly], cfg.image_size, cfg.channels, notes)
    if cfg.dataset == "folder":
        raise DataError("a folder-trained model has no test split of its own; pass its normal test images "
                        "with --normal-dir")
    test = idx_test(cfg, normal_classes, data_dir)
    keep = ~test.anomalous
    return TestSet(test.images[keep], test.labels[keep], test.names, test.anomalous[keep])


def other(name: str, cfg: Config, data_dir: str | None, notes: set[str] | None) -> TestSet:
    """Every image of another dataset's test split, or of a folder, at the model's size and channels."""
    from .datasets import load_test
    from .images import GREY_TO_COLOUR

    if name in IDX_DATASETS:
        split = load_test(name, Path(data_dir) if data_dir else cfg.resolved_data_dir(), cfg.image_size)
        images = split.images
        if cfg.channels == 3:
            from .inputs import match_channels

            images = match_channels(images, 3)[0]
            if notes is not None:
                notes.add(GREY_TO_COLOUR)
        n = len(images)
        return TestSet(images.numpy(), np.zeros(n, np.int64), [name], np.ones(n, bool))
    if Path(name).is_dir():
        test = load_test_set(folder_items(name, "anomaly"), cfg.image_size, cfg.channels, notes)
        return TestSet(test.images, np.zeros(len(test.images), np.int64), [Path(name).name or name],
                       np.ones(len(test.images), bool), test.paths, test.shapes, None, test.skipped)
    raise AnomalyVAEError(f"--anomalies {name!r} is neither a dataset ({', '.join(IDX_DATASETS)}) nor a folder")


def with_anomalies(normal: TestSet, anomalous: TestSet, name: str) -> TestSet:
    """Normal images (all labelled normal) followed by the anomalies as one more class named after their source."""
    names = [*normal.names, f"{anomalous.names[0]} (anomaly)"]
    labels = np.concatenate([normal.labels, np.full(len(anomalous.images), len(normal.names), np.int64)])
    paths = normal.paths + anomalous.paths if normal.paths is not None and anomalous.paths is not None else None
    shapes = normal.shapes + anomalous.shapes if normal.shapes is not None and anomalous.shapes is not None else None
    return TestSet(np.concatenate([normal.images, anomalous.images]), labels, names,
                   np.concatenate([np.zeros(len(normal.images), bool), np.ones(len(anomalous.images), bool)]),
                   paths, shapes, None, normal.skipped + anomalous.skipped)

