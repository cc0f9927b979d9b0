"""Runs, models and reports are named by what was learned, and repeated trainings can be told apart (issue 22,
items 5 and 6): a folder model is named by its folder, never 'train folder train' or 'normal classes folder'."""

from pathlib import Path

import numpy as np
import torch

from anomalyvae.config import make_config
from anomalyvae.tracking.lineage import (NAME_CHARS, evaluate_detail, evaluate_run_name, model_name, train_detail,
                                         train_run_name)


def test_a_flat_folder_run_is_named_by_its_folder_and_the_one_above_a_generic_name(tmp_path):
    assert train_run_name(make_config(dataset="folder", train_dir=str(tmp_path / "screws" / "train"))) == \
        "train screws/train"
    assert train_run_name(make_config(dataset="folder", train_dir=str(tmp_path / "screws"))) == "train screws"
    assert train_detail(make_config(dataset="folder", train_dir=str(tmp_path / "screws" / "train"))) == \
        "folder screws/train local"


def test_run_names_fit_the_runs_tables_name_column_and_the_detail_keeps_the_rest(tmp_path):
    """MLflow's runs table shows about 24 characters of a name ('train mnist normal 0-8 co...'): a name says
    what was learned, the detail tag (and the description) the architecture, limit, seed and folder."""
    from anomalyvae.pipeline.tables import table_run_name

    configs = [make_config(normal="0-8"), make_config(normal="0-8", arch="mlp", limit=300, seed=2, use_labels=True),
               make_config(normal="1,3,5"), make_config(dataset="mvtec", data_dir=str(tmp_path / "bottle")),
               make_config(dataset="folder", train_dir=str(tmp_path / "screws" / "train"))]
    names = [f(cfg) for cfg in configs for f in (train_run_name, evaluate_run_name)]
    names += [table_run_name(job, tmp_path / "wine.csv") for job in ("train", "evaluate")]
    assert all(len(n) <= NAME_CHARS for n in names), [n for n in names if len(n) > NAME_CHARS]
    assert names[:4] == ["train mnist 0-8", "evaluate mnist 0-8"] * 2 and names[-2:] == ["train table wine",
                                                                                          "evaluate table wine"]
    labelled = configs[1]
    assert train_detail(labelled, Path("models/small")) == "mnist normal 0-8 mlp-labels, limit 300, seed 2 -> small"
    assert evaluate_detail(labelled, "digit 9") == "mnist normal 0-8 mlp-labels, limit 300, seed 2 on digit 9"


def test_repeated_trainings_of_one_task_share_a_short_name_and_differ_in_their_detail():
    cfg = make_config(normal="0-8")
    runs = [(cfg, Path("models/mnist-normal0-8-conv-20250101-120000")),
            (cfg, Path("models/mnist-normal0-8-conv-20250101-120500")),
            (make_config(normal="0-8", limit=300), Path("models/small")),
            (make_config(normal="0-8", seed=1), Path("models/small"))]
    assert {train_run_name(c) for c, _ in runs} == {"train mnist 0-8"}
    assert [train_detail(c, out) for c, out in runs] == [
        "mnist normal 0-8 conv-labels (20250101-120000)", "mnist normal 0-8 conv-labels (20250101-120500)",
        "mnist normal 0-8 conv-labels, limit 300 -> small", "mnist normal 0-8 conv-labels, seed 1 -> small"]


def test_a_logged_model_is_named_by_what_it_learned_not_detector(tmp_path):
    assert model_name(make_config(normal="0-8", use_labels=False)) == "mnist-normal-0-8-conv"
    assert model_name(make_config(dataset="fashion-mnist", normal="0,2", arch="mlp")) == "fashion-mnist-normal-0_2-mlp-labels"
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
