import numpy as np
import pytest
from PIL import Image

from anomalyvae.errors import DataError
from anomalyvae.images import iter_image_files, load_image


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "I;16", "I", "F", "LA"])
def test_every_common_mode_becomes_28x28_uint8(tmp_path, mode):
    arr = np.random.default_rng(0).integers(0, 255, (40, 30), dtype=np.uint8)
    img = Image.fromarray(arr)
    img = img.convert(mode) if mode != "I;16" else Image.fromarray((arr.astype(np.uint16) * 257))
    img.save(tmp_path / ("x.tiff" if mode in ("I", "F") else "x.png"))
    out = load_image(next(tmp_path.iterdir()), 28)
    assert out.shape == (28, 28) and out.dtype == np.uint8


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((28, 28), 65535, np.uint16)).save(tmp_path / "w.png")
    assert load_image(tmp_path / "w.png", 28).min() == 255


def test_grayscale_28x28_passes_through_unchanged(tmp_path):
    arr = np.random.default_rng(1).integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "g.png")
    assert np.array_equal(load_image(tmp_path / "g.png", 28), arr)


@pytest.mark.parametrize("content, words", [
    (b"", "not a readable image"), (b"hello, I am text", "not a readable image"),
])
def test_non_images_are_data_errors(tmp_path, content, words):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(DataError, match=words):
        load_image(tmp_path / "bad.png", 28)


def test_truncated_png_is_a_data_error(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "t.png")
    raw = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError):
        load_image(tmp_path / "t.png", 28)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((200, 200), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(DataError, match="too large"):
        load_image(tmp_path / "bomb.png", 28)


def test_walk_finds_images_recursively_and_reports_missing_paths(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("a/1.png", "a/b/2.JPG", "a/notes.txt"):
        (tmp_path / p).write_bytes(b"x")
    found = list(iter_image_files([tmp_path / "a", tmp_path / "missing.png"]))
    assert [f.path.endswith(n) for f, n in zip(found, ["1.png", "2.JPG", "missing.png"])] == [True] * 3
    assert found[-1].error == "does not exist" and found[0].error is None


def test_symlink_loops_do_not_hang_the_walk(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d")
    (tmp_path / "d" / "self.png").symlink_to(tmp_path / "d" / "self.png")
    found = list(iter_image_files([tmp_path / "d"]))
    assert len(found) == 1  # the looping file is listed, and will be an error row when read
    with pytest.raises(DataError):
        load_image(found[0].path, 28)
