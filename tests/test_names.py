"""Runs, models and reports are named by what was learned, and repeated trainings can be told apart (issue 22,
items 5 and 6): a folder model is named by its folder, never 'train folder train' or 'normal classes folder'."""

from pathlib import Path

import numpy as np
import torch

from anomalyvae.config import make_config
from anomalyvae.tracking.lineage import model_name, train_run_name


def test_a_flat_folder_run_is_named_by_its_folder_and_the_one_above_a_generic_name(tmp_path):
    assert train_run_name(make_config(dataset="folder", train_dir=str(tmp_path / "screws" / "train"))) == \
        "train folder screws/train local"
    assert train_run_name(make_config(dataset="folder", train_dir=str(tmp_path / "screws"))) == \
        "train folder screws local"


def test_repeated_trainings_of_one_task_get_run_names_that_tell_them_apart():
    cfg = make_config(normal="0-8")
    names = {train_run_name(cfg, Path("models/mnist-normal0-8-conv-20250101-120000")),
             train_run_name(cfg, Path("models/mnist-normal0-8-conv-20250101-120500")),
             train_run_name(make_config(normal="0-8", limit=300), Path("models/small")),
             train_run_name(make_config(normal="0-8", seed=1), Path("models/small"))}
    assert names == {"train mnist normal 0-8 conv (20250101-120000)", "train mnist normal 0-8 conv (20250101-120500)",
                     "train mnist normal 0-8 conv, limit 300 -> small", "train mnist normal 0-8 conv, seed 1 -> small"}


def test_a_logged_model_is_named_by_what_it_learned_not_detector(tmp_path):
    assert model_name(make_config(normal="0-8")) == "mnist-normal-0-8-conv"
    assert model_name(make_config(dataset="fashion-mnist", normal="0,2", arch="mlp")) == "fashion-mnist-normal-0_2-mlp"
    assert model_name(make_config(dataset="folder", train_dir=str(tmp_path / "screws.v2" / "train"))) == \
        "folder-screws-v2-train-local"


def test_the_report_of_a_folder_model_names_its_folder_not_normal_classes(tiny_detector, tmp_path):
    from anomalyvae.data.layouts import TestSet
    from anomalyvae.pipeline.images import evaluate_detector

    tiny_detector.config_.dataset, tiny_detector.config_.train_dir = "folder", str(tmp_path / "screws" / "train")
    tiny_detector.info_["normal_classes"] = []
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = np.array([0] * 4 + [1] * 4)
    evaluate_detector(tiny_detector, tmp_path / "ev", test=TestSet(images.numpy(), labels, ["good", "bad"], labels == 1))
    page = (tmp_path / "ev" / "report.html").read_text()
    assert "normal classes" not in page
    assert f"mlp VAE on the normal images in {tmp_path / 'screws' / 'train'}" in page
