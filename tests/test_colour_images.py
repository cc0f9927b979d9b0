"""Issue 10 end to end through the CLI: colour and grey models, MVTec-AD folders with masks, flat folders,
other datasets as the anomalies, pictures, and the one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from anomalyvae.data import synthetic


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A small synthetic MVTec-AD folder of 48 px colour images: the model (32 px) is smaller than its input."""
    return synthetic.generate(tmp_path_factory.mktemp("syn") / "surface", n_train=40, n_test_good=6,
                              n_per_defect=3, size=48, seed=1)


@pytest.fixture(scope="module")
def colour_model(root, tmp_path_factory):
    from anomalyvae.config import make_config
    from anomalyvae.pipeline.images import train_detector

    out = tmp_path_factory.mktemp("models") / "colour"
    cfg = make_config(dataset="mvtec", data_dir=str(root), image_size=32, epochs=2, batch_size=16)
    train_detector(cfg, out, log=lambda m: None)
    return out


def meta(model_dir):
    return json.loads((model_dir / "model.json").read_text())


def test_a_colour_mvtec_folder_trains_an_rgb_model_on_train_good(colour_model):
    m = meta(colour_model)
    assert m["input_shape"] == [3, 32, 32] and m["config"]["channels"] == 3
    assert m["info"]["n_train"] + m["info"]["n_val"] == 40  # train/good only, never test/
    assert m["info"]["map_vmax"] > 0


def test_grey_is_forced_with_channels_1(root, cli, tmp_path):
    code, out, err = cli("train", "--dataset", "mvtec", "--data-dir", root, "--channels", "1", "--image-size", "28",
                         "--epochs", "1", "--no-tracking", "--out", tmp_path / "grey")
    assert code == 0, err
    assert meta(tmp_path / "grey")["input_shape"] == [1, 28, 28]


def test_evaluate_uses_the_trained_root_and_reports_pixel_metrics(root, colour_model, cli, tmp_path):
    code, out, err = cli("evaluate", "--model", colour_model, "--no-tracking", "--out", tmp_path / "ev",
                         "--metrics-out", tmp_path / "m.json")
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n_test"] == 6 + 3 * len(synthetic.DEFECTS) and m["n_anomalies"] == 12
    assert out.startswith(f"model {colour_model}: local patch VAE (memory bank of normal patches) on the MVTec-AD "
                          f"folder {root} (train/good), ")
    assert 0 <= m["pixel_auroc"] <= 1 and 0 <= m["pixel_aupro"] <= 1
    rows = {r["class"]: r for r in m["per_class"]}
    assert set(rows) == {"good", *synthetic.DEFECTS}
    assert all(0 <= rows[d]["pixel_aupro"] <= 1 for d in synthetic.DEFECTS) and "pixel_auroc" not in rows["good"]
    assert "pixel AUROC" in out
    page = (tmp_path / "ev" / "report.html").read_text()
    assert "pixel AUPRO" in page and page.count("<figure>") == 16 and "colour bar" in page


def test_evaluate_prints_where_the_report_is_and_each_defects_pixel_auroc(colour_model, cli, tmp_path):
    code, out, err = cli("evaluate", "--model", colour_model, "--no-tracking", "--out", tmp_path / "ev",
                         "--metrics-out", tmp_path / "m.json")
    assert code == 0, err
    assert f"report: {tmp_path / 'ev' / 'report.html'}" in out.splitlines(), out
    m = json.loads((tmp_path / "m.json").read_text())
    line = next(line for line in out.splitlines() if line.startswith("pixel AUROC per anomaly class: "))
    for r in m["per_class"]:
        if "pixel_auroc" in r:
            assert f"{r['class']}={r['pixel_auroc']:.3f}" in line, line


def test_evaluate_gives_each_defect_kinds_pixel_aupro_in_its_output_json_and_report(colour_model, cli, tmp_path):
    import re

    code, out, err = cli("evaluate", "--model", colour_model, "--no-tracking", "--out", tmp_path / "ev",
                         "--metrics-out", tmp_path / "m.json")
    assert code == 0, err
    rows = {r["class"]: r for r in json.loads((tmp_path / "m.json").read_text())["per_class"]}
    line = next(line for line in out.splitlines() if line.startswith("pixel AUPRO per anomaly class: "))
    page = (tmp_path / "ev" / "report.html").read_text()
    for d in synthetic.DEFECTS:
        assert 0 <= rows[d]["pixel_aupro"] <= 1
        assert f"{d}={rows[d]['pixel_aupro']:.3f}" in line, line
        cells = re.search(rf"<tr><td>{d}</td>(.*?)</tr>", page).group(1)
        assert f"{rows[d]['pixel_aupro']:.4f}" in cells and f"{rows[d]['pixel_auroc']:.4f}" in cells


def test_the_reports_captions_name_each_images_folder(colour_model, cli, tmp_path):
    import re

    code, out, err = cli("evaluate", "--model", colour_model, "--no-tracking", "--out", tmp_path / "ev")
    assert code == 0, err
    captions = re.findall(r"</b>: (\S+), class (\w+)", (tmp_path / "ev" / "report.html").read_text())
    assert len(captions) == 16
    assert all(re.fullmatch(rf"{cls}/\d+\.png", what) for what, cls in captions), captions


def test_heat_map_captions_name_each_images_folder(colour_model, root, cli, tmp_path, monkeypatch):
    from anomalyvae.evaluation import heatmaps

    captions, draw = [], heatmaps.figure
    monkeypatch.setattr(heatmaps, "figure", lambda *a, **k: captions.append(a[4]) or draw(*a, **k))
    code, out, err = cli("score", root / "test" / "spot", "--model", colour_model, "--heatmaps", tmp_path / "maps",
                         "--all", "--out", tmp_path / "s.csv")
    assert code == 0, err
    assert len(captions) == 3 and all(c.startswith("spot/") for c in captions), captions


def test_test_images_of_another_size_than_the_training_ones_get_the_resize_rule_once_in_one_line(
        colour_model, root, cli, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    for name in ("000.png", "001.png"):  # two files of another size: still one line
        path = copy / "test" / "good" / name
        Image.open(path).resize((64, 40)).save(path)
    code, out, err = cli("evaluate", "--model", colour_model, "--data-dir", copy, "--no-tracking",
                         "--out", tmp_path / "ev")
    assert code == 0, err
    lines = [line for line in err.splitlines() if "another size than the training images" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: "), err
    assert "(64x40; trained on 48x48)" in lines[0] and "resized to the model's 32x32" in lines[0]
    assert "aspect ratio ignored" in lines[0]
    code, out, err = cli("evaluate", "--model", colour_model, "--no-tracking", "--out", tmp_path / "ev2")
    assert code == 0 and "another size" not in err, err


def test_an_mvtec_root_without_train_good_is_one_line_naming_the_layout(cli, tmp_path):
    (tmp_path / "r" / "train").mkdir(parents=True)
    code, out, err = cli("train", "--dataset", "mvtec", "--data-dir", tmp_path / "r", "--no-tracking")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no train/good/ folder" in err and "ROOT/test/<defect>/" in err


def test_an_image_size_the_network_cannot_take_says_which_sizes_work(root, cli):
    code, out, err = cli("train", "--dataset", "mvtec", "--data-dir", root, "--image-size", "100", "--detector",
                         "global", "--no-tracking")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "image_size 100" in err and "96" in err and "128" in err


def test_a_mask_of_the_wrong_size_stops_evaluate_naming_both_files(colour_model, root, cli, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(copy / "ground_truth" / "spot" / "001_mask.png")
    code, out, err = cli("evaluate", "--model", colour_model, "--data-dir", copy, "--no-tracking",
                         "--out", tmp_path / "ev")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "spot/001_mask.png is 48x40" in err and "test/spot/001.png is 48x48" in err


def test_flat_folders_with_a_mask_folder_give_pixel_metrics(colour_model, root, cli, tmp_path):
    code, out, err = cli("evaluate", "--model", colour_model, "--normal-dir", root / "test" / "good",
                         "--anomaly-dir", root / "test" / "spot", "--mask-dir", root / "ground_truth" / "spot",
                         "--no-tracking", "--out", tmp_path / "ev", "--metrics-out", tmp_path / "m.json")
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n_test"] == 9 and 0 <= m["pixel_aupro"] <= 1


def test_a_folder_as_the_anomalies_against_the_models_own_normal_test_images(colour_model, root, cli, tmp_path):
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(4):
        Image.fromarray(np.full((20, 30), 40 * i, np.uint8)).save(grey / f"{i}.png")
    code, out, err = cli("evaluate", "--model", colour_model, "--anomalies", grey, "--no-tracking",
                         "--out", tmp_path / "ev", "--metrics-out", tmp_path / "m.json")
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert (m["n_test"], m["n_anomalies"]) == (6 + 4, 4)  # test/good, then the folder
    assert err.count("grey images given to a colour model were repeated to RGB") == 1


def test_scoring_grey_files_with_a_colour_model_converts_them_and_says_so_once(colour_model, cli, tmp_path):
    for i in range(3):
        Image.fromarray(np.full((32, 32), 60 * i, np.uint8)).save(tmp_path / f"g{i}.png")
    code, out, err = cli("score", tmp_path, "--model", colour_model, "--out", tmp_path / "s.csv")
    assert code == 0, err
    assert err.count("repeated to RGB") == 1 and "3 files" in out


def test_heatmaps_are_drawn_at_the_inputs_resolution_in_colour(colour_model, root, cli, tmp_path):
    from anomalyvae.evaluation.heatmaps import LABEL_H, display_shape

    code, out, err = cli("score", root / "test" / "colour", "--model", colour_model, "--out", tmp_path / "s.csv",
                         "--heatmaps", tmp_path / "maps")
    assert code == 0, err
    pictures = sorted((tmp_path / "maps").iterdir())
    assert pictures, "no image was flagged"
    pic = np.asarray(Image.open(pictures[0]))
    h, w = display_shape((48, 48))  # the 48 px file, not the 32 px model input
    assert pic.ndim == 3 and pic.shape[2] == 3 and pic.shape[0] == LABEL_H + h + 16  # labels above, caption below
    image, overlay = pic[LABEL_H:LABEL_H + h, :w], pic[LABEL_H:LABEL_H + h, 2 * (w + 4):3 * w + 8]
    assert (image[..., 0] != image[..., 2]).any()  # the input is drawn in colour
    assert not np.array_equal(image, overlay)  # and the map over it


def write_idx(path, array):
    """An IDX file as MNIST and Fashion-MNIST ship them (gzip, big-endian dimensions, uint8 data)."""
    import gzip
    import struct

    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape))
        f.write(np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path, mnist_dir):
    """A data folder with MNIST (links to the suite's copy) and a small stand-in for Fashion-MNIST's test split:
    bright rectangles on noise, ten classes, where anomalyvae looks for them (DATA_DIR/fashion-mnist)."""
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    for f in mnist_dir.glob("*-ubyte.gz"):
        (data / "mnist" / f.name).symlink_to(f)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 30)
    images = rng.integers(0, 80, (len(labels), 28, 28), dtype=np.uint8)
    for img, c in zip(images, labels):
        img[4 + c:20 + c // 2, 3:25] = 230  # a garment-sized block, placed by class
    (data / "fashion-mnist").mkdir()
    write_idx(data / "fashion-mnist" / "t10k-images-idx3-ubyte.gz", images)
    write_idx(data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", labels)
    return data, len(labels)


def test_every_class_normal_needs_other_anomalies(cli, tmp_path, mnist_dir, fake_fashion):
    data, n_fashion = fake_fashion
    code, out, err = cli("train", "--normal", "all", "--limit", "300", "--epochs", "1", "--data-dir", mnist_dir,
                         "--no-tracking", "--out", tmp_path / "all")
    assert code == 0, err
    assert meta(tmp_path / "all")["info"]["normal_classes"] == list(range(10))
    code, out, err = cli("evaluate", "--model", tmp_path / "all", "--no-tracking", "--out", tmp_path / "ev")
    assert code == 2 and "no anomalies; pass --anomalies" in err and "fashion-mnist" in err
    code, out, err = cli("evaluate", "--model", tmp_path / "all", "--anomalies", "fashion-mnist", "--data-dir", data,
                         "--no-tracking", "--out", tmp_path / "ev", "--metrics-out", tmp_path / "m.json")
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    from anomalyvae.data.idx import read_idx

    n_mnist = len(read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz"))
    assert (m["n_test"], m["n_anomalies"]) == (n_mnist + n_fashion, n_fashion)  # MNIST's test split, then the others
    assert m["per_class"][-1]["class"] == "fashion-mnist (anomaly)" and "pixel_auroc" not in m
    assert m["per_class"][-1]["mean_score"] > max(r["mean_score"] for r in m["per_class"][:-1])  # not MNIST again


@pytest.mark.parametrize("size", [28, 32, 48, 64, 96, 128, 160, 192, 224, 256])
def test_every_reasonable_image_size_is_accepted(size):
    from anomalyvae.config import make_config

    assert make_config(image_size=size).image_size == size


def test_a_256_px_colour_model_trains_and_scores(root, tmp_path):
    from anomalyvae.config import make_config
    from anomalyvae.pipeline.files import score_paths
    from anomalyvae.pipeline.images import train_detector

    cfg = make_config(dataset="mvtec", data_dir=str(root), image_size=256, epochs=1, batch_size=8, limit=8)
    det, out = train_detector(cfg, tmp_path / "m256", log=lambda m: None)
    assert det.input_shape_ == (3, 256, 256)
    summary = score_paths(det, [root / "test" / "spot"], tmp_path / "s.csv")
    assert (summary.n_scored, summary.n_errors) == (3, 0)


def test_pictures_of_large_images_are_shrunk_keeping_their_shape():
    from anomalyvae.evaluation.heatmaps import DISPLAY, figure

    image = np.zeros((3, 600, 1000), np.uint8)
    pic = figure(image, np.zeros((3, 32, 32)), np.zeros((32, 32)), 1.0, "caption")
    assert pic.shape[0] == round(600 * DISPLAY[1] / 1000) + 16 and pic.shape[1] > 3 * DISPLAY[1]


def test_pixel_metrics_reach_mlflow(colour_model, cli, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = cli("evaluate", "--model", colour_model, "--tracking-uri", uri, "--out", tmp_path / "ev")
    assert code == 0, err
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("anomalyvae").experiment_id])[0]
    keys = set(run.data.metrics)
    assert {"pixel_auroc", "pixel_aupro", "local_auroc"} <= keys
    assert {f"pixel_aupro_class_{d}" for d in synthetic.DEFECTS} <= keys  # per defect, by its folder's name


def test_pixel_metrics_go_on_the_logged_model_per_test_set(root, tmp_path):
    """The models table ranks inspection models by pixel AUROC / AUPRO too, per evaluation set."""
    import mlflow

    from anomalyvae.config import make_config
    from anomalyvae.pipeline.images import evaluate_detector, train_detector
    from anomalyvae.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = make_config(dataset="mvtec", data_dir=str(root), image_size=32, epochs=1, batch_size=16)
    det, out = train_detector(cfg, tmp_path / "m", tracker=Tracker("e", uri), log=lambda m: None)
    res = evaluate_detector(det, tmp_path / "ev", tracker=Tracker("e", uri), model_dir=out)
    client = mlflow.MlflowClient(tracking_uri=uri)
    (model,) = client.search_logged_models([client.get_experiment_by_name("e").experiment_id])
    on_test = {m.key: (m.value, m.dataset_name) for m in model.metrics if m.dataset_name == f"mvtec-{root.name}-test"}
    assert on_test["pixel_auroc"] == (pytest.approx(res["pixel_auroc"]), f"mvtec-{root.name}-test")
    assert on_test["pixel_aupro"][0] == pytest.approx(res["pixel_aupro"]) and "auroc" in on_test
