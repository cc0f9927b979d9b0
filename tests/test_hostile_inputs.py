"""Messy folders and broken dataset files: a bad file is a row with a reason (score) or a skipped file
(train --dataset folder), a bad dataset is one line and exit 2; nothing hangs, crashes or goes missing."""

import gzip
import os
import re
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from anomalyvae.estimator import AnomalyVAE
from anomalyvae.errors import DataError
from anomalyvae.data.images import load_image

TINY = "arch: mlp\nhidden: 32\nlatent_dim: 4\nlatent_components: 2\nthreads: 1\n"


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG that declares width x height pixels but holds one row: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))


def gray(seed: int, shape=(28, 28)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


@pytest.fixture
def messy(tmp_path):
    """A folder of every kind of file users point us at: (folder, good file names, {bad name: words})."""
    d = tmp_path / "messy"
    (d / "sub").mkdir(parents=True)
    good, bad = [], {}

    def keep(name, img):
        img.save(d / name)
        good.append(name)

    for i in range(3):
        keep(f"digit{i}.png", Image.fromarray(gray(i)))
    keep("rgb.png", Image.fromarray(np.stack([gray(3)] * 3, axis=-1)))
    keep("rgba.png", Image.fromarray(np.stack([gray(4)] * 4, axis=-1)))
    keep("palette.gif", Image.fromarray(gray(5)).convert("P"))
    palette = Image.fromarray(gray(6)).convert("P")
    palette.info["transparency"] = 0
    keep("palette_alpha.png", palette)
    keep("sixteen.png", Image.fromarray(gray(7).astype(np.uint16) * 257))
    keep("cmyk.jpg", Image.fromarray(np.stack([gray(8)] * 3, axis=-1)).convert("CMYK"))
    keep("sub/huge.png", Image.new("L", (5000, 5000)))  # 25 megapixels: big, but below Pillow's bomb limit
    name = os.fsencode(d / "sub") + b"/caf\xe9.png"  # Latin-1 bytes: not valid UTF-8
    Image.fromarray(gray(9)).save(open(name, "wb"), format="PNG")
    good.append("sub/caf\\xe9.png")  # how the CSV shows it

    def spoil(name, words, content=None):
        if content is not None:
            (d / name).write_bytes(content)
        bad[name] = words

    spoil("zero.png", "^empty file", b"")
    raw = (d / "digit0.png").read_bytes()
    spoil("truncated.png", "corrupt|truncated|cannot read", raw[: len(raw) // 2])
    spoil("text.jpg", "not a readable image", b"I am a text file with an image extension\n")
    spoil("bomb.png", "too large", png_header_only(30000, 30000))  # over 2x the limit: Pillow's error
    spoil("bomb_warn.png", "too large", png_header_only(10001, 10000))  # just over our 100 MP: Pillow only warns
    os.mkfifo(d / "fifo.png")
    spoil("fifo.png", "not a regular file")
    (d / "loop.png").symlink_to(d / "loop.png")
    spoil("loop.png", "symbolic links|cannot read")
    (d / "broken.png").symlink_to(d / "nowhere.png")
    spoil("broken.png", "No such file|cannot read")
    (d / "sub" / "up").symlink_to(d)  # a folder loop: not followed, so no file twice and no endless walk
    (d / "folder.png").mkdir()  # a folder named like an image: walked, holds nothing
    (d / "notes.txt").write_text("not an image extension: never listed\n")
    return d, good, bad


def read_scores(csv) -> pd.DataFrame:
    return pd.read_csv(csv, keep_default_na=False)


def test_score_reports_every_bad_file_in_the_error_column_and_scores_every_good_one(messy, tmp_path, cli,
                                                                                   tiny_detector):
    folder, good, bad = messy
    tiny_detector.save(tmp_path / "model")
    code, out, err = cli("score", folder, "--model", tmp_path / "model", "--out", tmp_path / "s.csv")
    assert code == 0, err
    df = read_scores(tmp_path / "s.csv")
    names = df["path"].str.slice(len(str(folder)) + 1)
    assert sorted(names) == sorted(good + list(bad))  # every file once; the folder loop is not followed
    rows = dict(zip(names, df.to_dict("records")))
    for name in good:
        assert rows[name]["error"] == "" and np.isfinite(float(rows[name]["elbo"])), name
    for name, words in bad.items():
        assert re.search(words, rows[name]["error"]), (name, rows[name]["error"])
        assert rows[name]["elbo"] == "", name
    assert f"{len(bad)} unreadable" in out and "Traceback" not in err


def test_train_on_a_messy_folder_skips_the_bad_files_and_uses_all_good_ones(messy, tmp_path, cli):
    folder, good, bad = messy
    (tmp_path / "tiny.yaml").write_text(TINY)
    code, _, err = cli("train", "--dataset", "folder", "--train-dir", folder, "--epochs", "1", "--config",
                       tmp_path / "tiny.yaml", "--out", tmp_path / "m", "--no-tracking")
    assert code == 0, err
    assert f"skipped {len(bad)} unreadable file(s)" in err
    info = AnomalyVAE.load(tmp_path / "m").info_
    assert info["n_train"] + info["n_val"] == len(good)


@pytest.mark.parametrize("make, words", [
    (lambda d: None, "no readable images"),
    (lambda d: (d / "a.png").write_bytes(b"") or (d / "b.jpg").write_text("text"), "no readable images"),
    (lambda d: d.rmdir(), "is not a folder"),
], ids=["empty", "only-bad-files", "missing"])
def test_train_on_a_folder_without_usable_images_is_one_line_exit_2(tmp_path, cli, make, words):
    (tmp_path / "d").mkdir()
    make(tmp_path / "d")
    code, _, err = cli("train", "--dataset", "folder", "--train-dir", tmp_path / "d", "--no-tracking",
                       "--out", tmp_path / "m")
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("dataset", ["folder", "mvtec"])
def test_train_on_a_folder_of_one_picture_repeated_is_one_line_exit_2_and_writes_no_model(tmp_path, cli, dataset):
    root = tmp_path / "r"
    folder = root / "train" / "good" if dataset == "mvtec" else root
    folder.mkdir(parents=True)
    picture = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for i in range(12):
        Image.fromarray(picture).save(folder / f"{i:03d}.png")
    where = ["--data-dir", root] if dataset == "mvtec" else ["--train-dir", root]
    code, out, err = cli("train", "--dataset", dataset, *where, "--no-tracking", "--out", tmp_path / "m")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"all 12 images in {folder} are the same picture" in err and "varied normal images" in err, err
    assert not (tmp_path / "m").exists() and "epoch" not in out


def test_unreadable_files_and_folders_are_error_rows(tmp_path, tiny_detector):
    from anomalyvae.pipeline.files import score_paths

    Image.fromarray(gray(0)).save(tmp_path / "ok.png")
    Image.fromarray(gray(1)).save(tmp_path / "locked.png")
    (tmp_path / "closed").mkdir()
    Image.fromarray(gray(2)).save(tmp_path / "closed" / "inside.png")
    os.chmod(tmp_path / "locked.png", 0)
    os.chmod(tmp_path / "closed", 0)
    try:
        if os.access(tmp_path / "locked.png", os.R_OK):
            pytest.skip("running as root: chmod 000 does not deny reads here")
        score_paths(tiny_detector, [tmp_path], tmp_path / "s.csv")
    finally:
        os.chmod(tmp_path / "closed", 0o755)
    df = read_scores(tmp_path / "s.csv")
    errors = dict(zip(df["path"].str.rsplit("/", n=1).str[-1], df["error"]))
    assert errors["ok.png"] == ""
    assert "Permission denied" in errors["locked.png"] and "Permission denied" in errors["closed"]


def test_a_permission_error_while_opening_is_a_data_error(tmp_path, monkeypatch):
    """The same path as above for machines where tests run as root and chmod cannot deny a read."""
    Image.fromarray(gray(0)).save(tmp_path / "x.png")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    import anomalyvae.data.images

    monkeypatch.setattr(anomalyvae.data.images, "open", denied, raising=False)  # the module reads the file itself
    with pytest.raises(DataError, match="cannot read: Permission denied"):
        load_image(tmp_path / "x.png", 28)


def test_a_file_that_is_not_utf8_named_is_scored_when_named_directly(tmp_path, tiny_detector):
    from anomalyvae.pipeline.files import score_paths

    name = os.fsencode(tmp_path) + b"/\xff\xfe.png"
    Image.fromarray(gray(0)).save(open(name, "wb"), format="PNG")
    for given in (name, os.fsdecode(name)):  # bytes from Python, str with surrogates from the command line
        summary = score_paths(tiny_detector, [given], tmp_path / "s.csv")
        assert (summary.n_scored, summary.n_errors) == (1, 0)
        assert read_scores(tmp_path / "s.csv")["path"][0].endswith("\\xff\\xfe.png")


# -- IDX files -------------------------------------------------------------------------------------------

def idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape) + array.tobytes()


IMAGES = np.stack([gray(i) for i in range(40)])
LABELS = (np.arange(40) % 10).astype(np.uint8)


def with_count(raw: bytes, n: int) -> bytes:
    return raw[:4] + n.to_bytes(4, "big") + raw[8:]


@pytest.mark.parametrize("images, labels, words", [
    (idx(IMAGES), idx(LABELS), None),
    (b"PK\x03\x04" + idx(IMAGES)[4:], idx(LABELS), "wrong magic number"),
    (with_count(idx(IMAGES), 41), idx(LABELS), "truncated"),
    (with_count(idx(IMAGES), 39), idx(LABELS), "longer than its header says"),
    (idx(IMAGES)[:-100], idx(LABELS), "truncated"),
    (idx(IMAGES), idx(LABELS[:30]), "do not belong together"),
    (idx(IMAGES), idx(IMAGES), "not a label file"),
    (idx(IMAGES), idx(LABELS + 10), "out of range"),
    (gzip.compress(idx(IMAGES))[:500], idx(LABELS), "gzip"),
], ids=["valid", "magic", "count-too-high", "count-too-low", "truncated", "label-count", "labels-are-images",
        "label-range", "truncated-gzip"])
def test_broken_idx_files_are_one_line_and_exit_2(tmp_path, cli, images, labels, words):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-images-idx3-ubyte").write_bytes(images)
    (tmp_path / "data" / "train-labels-idx1-ubyte").write_bytes(labels)
    (tmp_path / "tiny.yaml").write_text(TINY)
    code, _, err = cli("train", "--data-dir", tmp_path / "data", "--epochs", "1", "--config", tmp_path / "tiny.yaml",
                       "--no-tracking", "--out", tmp_path / "m")
    if words is None:  # the same files unbroken train fine: each failure below is the breakage's doing
        assert code == 0, err
        return
    assert code == 2 and words in err, err
    assert len(err.strip().splitlines()) == 1 and "train-" in err
    assert not (tmp_path / "m").exists()
