"""Which test set `evaluate` builds from the flags, and the flag combinations it refuses."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from anomalyvae.config import make_config
from anomalyvae.errors import AnomalyVAEError, DataError
from anomalyvae.detectors.maps import pixel_map
from anomalyvae.data.testsets import build


def fake(dataset="folder", channels=3, size=16, normal=()):
    cfg = make_config(dataset=dataset, train_dir="x", image_size=size, channels=channels)
    return SimpleNamespace(config_=cfg, input_shape_=(channels, size, size), info_={"normal_classes": list(normal)})


@pytest.fixture
def folders(tmp_path):
    for name, n in (("normal", 3), ("bad", 2)):
        (tmp_path / name).mkdir()
        for i in range(n):
            Image.fromarray(np.full((20, 20, 3), 30 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    return tmp_path


@pytest.mark.parametrize("flags, words", [
    ({"normal_dir": "normal"}, "go together"),
    ({"anomaly_dir": "bad"}, "go together"),
    ({"anomaly_dir": "bad", "normal_dir": "normal", "anomalies": "mnist"}, "pass one of them"),
    ({"mask_dir": "bad"}, "--mask-dir goes with"),
    ({"normal_dir": "normal", "anomalies": "cifar"}, "neither a dataset"),
    ({}, "no test split"),
])
def test_flag_combinations_that_cannot_work_are_refused(folders, flags, words):
    flags = {k: str(folders / v) if k.endswith("_dir") else v for k, v in flags.items()}
    with pytest.raises((AnomalyVAEError, DataError), match=words):
        build(fake(), **flags)


def test_a_folder_of_anomalies_joins_the_normal_folder_as_one_more_class(folders):
    test = build(fake(), normal_dir=str(folders / "normal"), anomalies=str(folders / "bad"))
    assert test.images.shape == (5, 3, 16, 16) and test.anomalous.tolist() == [False] * 3 + [True] * 2
    assert test.names == ["good", "bad (anomaly)"] and test.labels.tolist() == [0, 0, 0, 1, 1]


def test_images_take_the_networks_channels_whatever_the_config_says(folders):
    det = fake(channels=1)
    det.config_.channels = None  # a model's input shape is what its network takes
    test = build(det, normal_dir=str(folders / "normal"), anomaly_dir=str(folders / "bad"))
    assert test.images.shape == (5, 1, 16, 16)


def test_the_anomaly_map_is_squared_error_summed_over_channels_then_smoothed():
    x = torch.zeros(1, 3, 64, 64)
    x[0, :, 30:34, 20:24] = torch.tensor([0.2, 0.5, 0.9])[:, None, None]
    rec = torch.zeros_like(x)
    expected = gaussian_filter(((x - rec) ** 2).sum(1).numpy(), (0, 1.0, 1.0), mode="nearest")
    assert np.allclose(pixel_map(x, rec, sigma=1 / 64).numpy(), expected, atol=1e-6)


def test_a_flat_mnist_folder_is_never_read_as_fashion_mnist(tmp_path, monkeypatch, mnist_dir):
    from anomalyvae.data import datasets as data

    for f in mnist_dir.glob("*.gz"):
        (tmp_path / f.name).symlink_to(f)  # the same file names Fashion-MNIST uses
    assert data.locate("mnist", tmp_path, "test", download=False)[1].parent == tmp_path
    monkeypatch.setattr(data, "SYSTEM_DIRS", {})
    with pytest.raises(DataError, match=f"{tmp_path} holds mnist, not fashion-mnist.*put .* in {tmp_path}/fashion-mnist"):
        data.locate("fashion-mnist", tmp_path, "test", download=False)


def test_other_official_files_are_identified_and_custom_ones_are_not(tmp_path, mnist_dir):
    import gzip

    from anomalyvae.data.datasets import identify

    assert identify(mnist_dir / "t10k-labels-idx1-ubyte.gz", "test") == "mnist"
    assert identify(mnist_dir / "t10k-labels-idx1-ubyte.gz", "train") is None
    labels = bytes(range(10)) * 3  # a custom label file: any dataset may hold it
    (tmp_path / "l.gz").write_bytes(gzip.compress(b"\0\0\x08\x01" + len(labels).to_bytes(4, "big") + labels))
    assert identify(tmp_path / "l.gz", "test") is None
