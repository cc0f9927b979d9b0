import numpy as np
import pytest
from PIL import Image

from anomalyvae.errors import DataError
from anomalyvae.data.images import iter_image_files, load_image


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "I;16", "I", "F", "LA"])
def test_every_common_mode_becomes_one_28x28_uint8_channel(tmp_path, mode):
    arr = np.random.default_rng(0).integers(0, 255, (40, 30), dtype=np.uint8)
    img = Image.fromarray(arr)
    img = img.convert(mode) if mode != "I;16" else Image.fromarray((arr.astype(np.uint16) * 257))
    img.save(tmp_path / ("x.tiff" if mode in ("I", "F") else "x.png"))
    out = load_image(next(tmp_path.iterdir()), 28)
    assert out.shape == (1, 28, 28) and out.dtype == np.uint8


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((28, 28), 65535, np.uint16)).save(tmp_path / "w.png")
    assert load_image(tmp_path / "w.png", 28).min() == 255


def test_grayscale_28x28_passes_through_unchanged(tmp_path):
    arr = np.random.default_rng(1).integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "g.png")
    assert np.array_equal(load_image(tmp_path / "g.png", 28)[0], arr)


@pytest.mark.parametrize("content, words", [
    (b"hello, I am text", "not a readable image"), (b"\x89PNG\r\n\x1a\n", "not a readable image"),
])
def test_non_images_are_data_errors(tmp_path, content, words):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(DataError, match=words):
        load_image(tmp_path / "bad.png", 28)


def test_a_zero_byte_file_is_reported_as_an_empty_file_not_an_unknown_format(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"^empty file \(0 bytes\)$"):
        load_image(tmp_path / "zero.png", 28)


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


# -- channels, sizes and the limits of issue 10 ------------------------------------------------------------
import struct  # noqa: E402
import zlib  # noqa: E402

from anomalyvae.data import images  # noqa: E402
from anomalyvae.data.images import COLOUR_TO_GREY, GREY_TO_COLOUR, load_files  # noqa: E402


def rgb(seed, shape=(32, 32)):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def test_colour_stays_three_channels_in_rgb_order(tmp_path):
    arr = rgb(0)
    Image.fromarray(arr).save(tmp_path / "c.png")
    out = load_image(tmp_path / "c.png", 32, channels=3)
    assert out.shape == (3, 32, 32) and np.array_equal(out, arr.transpose(2, 0, 1))


def test_alpha_is_dropped_not_composited(tmp_path):
    arr = np.dstack([rgb(1), np.zeros((32, 32), np.uint8)])  # fully transparent: the colours must survive
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png", 32, channels=3), arr[..., :3].transpose(2, 0, 1))


def test_a_palette_is_expanded_to_its_colours(tmp_path):
    img = Image.fromarray(rgb(2)).quantize(16)
    img.save(tmp_path / "p.png")
    expected = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(load_image(tmp_path / "p.png", 32, channels=3), expected)


def test_colour_to_grey_is_itu_601_luma_and_is_noted(tmp_path):
    Image.fromarray(rgb(3)).save(tmp_path / "c.png")
    notes = set()
    out = load_image(tmp_path / "c.png", 32, channels=1, notes=notes)
    assert np.array_equal(out[0], np.asarray(Image.fromarray(rgb(3)).convert("L")))
    assert notes == {COLOUR_TO_GREY}


def test_grey_to_colour_repeats_the_channel_and_is_noted(tmp_path):
    arr = rgb(4)[..., 0]
    Image.fromarray(arr).save(tmp_path / "g.png")
    notes = set()
    out = load_image(tmp_path / "g.png", 32, channels=3, notes=notes)
    assert np.array_equal(out, np.stack([arr] * 3)) and notes == {GREY_TO_COLOUR}


def test_an_rgb_file_of_grey_pixels_is_grey(tmp_path):
    Image.fromarray(np.dstack([rgb(5)[..., 0]] * 3)).save(tmp_path / "g.png")
    notes = set()
    load_image(tmp_path / "g.png", 32, channels=1, notes=notes)
    assert notes == set()


def test_channels_follow_the_files_any_colour_makes_three(tmp_path):
    grey = rgb(6)[..., 0]
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "b.png")  # RGB file, grey pixels
    arr, paths, bad = load_files(sorted(tmp_path.iterdir()), 32)
    assert arr.shape == (2, 1, 32, 32) and not bad
    assert np.array_equal(arr[0], load_image(tmp_path / "a.png", 32, 1))  # the same pixels as a grey decode
    Image.fromarray(rgb(7)).save(tmp_path / "c.png")
    arr, _, _ = load_files(sorted(tmp_path.iterdir()), 32)
    assert arr.shape == (3, 3, 32, 32)
    arr, _, _ = load_files(sorted(tmp_path.iterdir()), 32, channels=1)  # told: grey
    assert arr.shape == (3, 1, 32, 32)


def test_mixed_sizes_and_modes_in_one_folder_are_all_converted(tmp_path):
    Image.fromarray(rgb(8, (50, 70))).save(tmp_path / "a.jpg")
    Image.fromarray(rgb(9, (20, 20))[..., 0]).save(tmp_path / "b.png")
    Image.fromarray(rgb(10, (64, 64))).convert("P").save(tmp_path / "c.gif")
    Image.fromarray(rgb(11, (30, 40)).astype(np.uint16)[..., 0] * 257).save(tmp_path / "d.png")
    arr, paths, bad = images.load_folder(tmp_path, 48)
    assert arr.shape == (4, 3, 48, 48) and not bad


def test_a_non_square_image_is_resized_whole_ignoring_its_aspect_ratio(tmp_path):
    arr = np.zeros((20, 60), np.uint8)
    arr[:, :10] = 255  # a bright band at the left edge: a centre crop would lose it
    Image.fromarray(arr).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 30)[0]
    assert np.array_equal(out, np.asarray(Image.fromarray(arr).resize((30, 30), Image.Resampling.BILINEAR)))
    assert out[:, :4].min() > 200 and out[:, 6:].max() < 60


@pytest.mark.parametrize("size", [28, 64, 128, 256])
def test_any_reasonable_size(tmp_path, size):
    Image.fromarray(rgb(12, (100, 80))).save(tmp_path / "x.png")
    assert load_image(tmp_path / "x.png", size, 3).shape == (3, size, size)


def test_size_none_keeps_the_files_own_size(tmp_path):
    Image.fromarray(rgb(13, (21, 34))).save(tmp_path / "x.png")
    assert load_image(tmp_path / "x.png", None, 3).shape == (3, 21, 34)


def png_header(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("w, h", [(0, 10), (10, 0)])
def test_an_image_with_no_pixels_is_a_data_error(tmp_path, w, h):
    (tmp_path / "empty.png").write_bytes(png_header(w, h))
    with pytest.raises(DataError, match="no pixels"):
        load_image(tmp_path / "empty.png", 28, 3)


def test_over_100_megapixels_is_refused_from_the_header(tmp_path):
    (tmp_path / "big.png").write_bytes(png_header(20000, 5001))  # 100.02 MP, below Pillow's own error
    with pytest.raises(DataError, match="too large.*limit is 100"):
        load_image(tmp_path / "big.png", 128, 3)


def test_the_pixel_limit_is_ours_not_pillows(tmp_path, monkeypatch):
    Image.fromarray(rgb(14, (40, 40))).save(tmp_path / "x.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 40 * 40 - 1)
    with pytest.raises(DataError, match="too large"):
        load_image(tmp_path / "x.png", 28, 3)
    monkeypatch.setattr(images, "MAX_PIXELS", 40 * 40)
    assert load_image(tmp_path / "x.png", 28, 3).shape == (3, 28, 28)
