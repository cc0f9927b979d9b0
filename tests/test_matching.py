"""The newest model is used only on the kind of data it was trained on (issue 22, item 3): without --model,
files of another kind (channels, size) are refused in one line that names the models trained on such files."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from anomalyvae.estimator import AnomalyVAE


@pytest.fixture
def two_models(tmp_path, tiny_detector, monkeypatch):
    """models/digits (grey 28x28, MNIST), then, newer, models/photos (colour 32x32, a folder)."""
    monkeypatch.chdir(tmp_path)
    tiny_detector.save("models/digits")
    rgb = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    photos = AnomalyVAE(arch="mlp", latent_dim=4, hidden=32, latent_components=2, epochs=1, val_fraction=0.25,
                        image_size=32, random_state=0, threads=1).fit(rgb)
    photos.config_.dataset, photos.config_.train_dir = "folder", "photos/train"
    photos.save("models/photos")
    os.utime("models/digits/model.safetensors", (1, 1))  # the older of the two
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save("digit.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save("photo.png")


def test_a_digit_is_not_scored_by_the_newest_model_when_that_is_a_photo_model(two_models, cli):
    code, out, err = cli("score", "digit.png", "--out", "s.csv")
    assert code == 2 and not os.path.exists("s.csv")
    assert err.strip() == ("error: the newest model, models/photos, was trained on colour 32x32 images (folder), but "
                           "digit.png is grey 28x28 images; models trained on such images: models/digits; pass one "
                           "with --model DIR, or pass --model models/photos to use it anyway")


def test_the_newest_model_scores_files_of_its_own_kind_without_a_word(two_models, cli):
    code, out, err = cli("score", "photo.png", "--out", "s.csv")
    assert code == 0, err
    assert out.startswith("model models/photos:") and err.strip() == ""


def test_a_model_named_with_model_is_used_as_asked_with_its_conversion_note(two_models, cli):
    code, out, err = cli("score", "digit.png", "--model", "models/photos", "--out", "s.csv")
    assert code == 0 and "grey images given to a colour model were repeated to RGB" in err


def test_when_no_model_fits_the_files_the_error_says_to_train_one(two_models, cli):
    Image.fromarray(np.zeros((300, 300), np.uint8)).save("big.png")  # grey and large: neither model's kind
    code, _, err = cli("score", "big.png", "--out", "s.csv")
    assert code == 2 and "no model under models/ was trained on such images; train one" in err
