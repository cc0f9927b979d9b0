import gzip

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from anomalyvae.errors import DataError
from anomalyvae.data.idx import parse_idx, read_idx


def idx_bytes(array: np.ndarray, code=0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_real_mnist_files_read_with_their_official_shapes(mnist_dir):
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))


def test_gzipped_and_plain_files_read_the_same(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x").write_bytes(idx_bytes(a))
    (tmp_path / "x.gz").write_bytes(gzip.compress(idx_bytes(a)))
    assert np.array_equal(read_idx(tmp_path / "x"), a)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), a)


def test_big_endian_types_decode():
    a = np.array([[1, -2], [300, 70000]], dtype=np.int32)
    assert np.array_equal(parse_idx(idx_bytes(a, 0x0C)), a)


def test_truncated_data_is_refused():
    raw = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(DataError, match="truncated"):
        parse_idx(raw[:-1])


def test_truncated_gzip_is_refused(tmp_path):
    raw = gzip.compress(idx_bytes(np.ones((50, 28, 28), np.uint8)))
    (tmp_path / "t.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "t.gz")


def test_wrong_magic_is_refused():
    with pytest.raises(DataError, match="magic"):
        parse_idx(b"\x00\x01\x08\x01" + (3).to_bytes(4, "big") + b"abc")


def test_count_larger_than_data_is_refused():
    raw = bytearray(idx_bytes(np.zeros(10, np.uint8)))
    raw[4:8] = (11).to_bytes(4, "big")
    with pytest.raises(DataError, match="truncated"):
        parse_idx(bytes(raw))


def test_extra_bytes_are_refused():
    with pytest.raises(DataError, match="longer"):
        parse_idx(idx_bytes(np.zeros(10, np.uint8)) + b"\x00")


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope.gz")


def assert_reads_exactly(raw: bytes, out: np.ndarray) -> None:
    """What parsed must be what the bytes say: re-encoded with its type code, it is the same file."""
    assert out.ndim == raw[3] and idx_bytes(out, raw[2]) == raw


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_data_error_or_read_exactly(raw):
    try:
        out = parse_idx(raw)
    except DataError:
        return
    assert_reads_exactly(raw, out)


@settings(max_examples=200)
@given(st.binary(max_size=40))
def test_random_bytes_after_a_valid_magic_raise_only_data_error_or_read_exactly(tail):
    raw = b"\x00\x00\x08\x02" + tail
    try:
        out = parse_idx(raw)
    except DataError:
        return
    assert_reads_exactly(raw, out)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4), st.integers(0, 4), st.data())
def test_a_header_with_exactly_enough_data_reads_exactly(rows, cols, data):
    body = data.draw(st.binary(min_size=rows * cols, max_size=rows * cols))
    raw = b"\x00\x00\x08\x02" + rows.to_bytes(4, "big") + cols.to_bytes(4, "big") + body
    out = parse_idx(raw)
    assert out.shape == (rows, cols) and out.tobytes() == body
    assert_reads_exactly(raw, out)


_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
          np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
_arrays = hnp.arrays(dtype=st.sampled_from(list(_CODES)),
                     shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))


@settings(max_examples=150, deadline=None)
@given(_arrays)
def test_every_valid_file_decodes_to_its_array(a):
    out = parse_idx(idx_bytes(a, _CODES[a.dtype]))
    assert out.shape == a.shape and np.array_equal(out, a, equal_nan=a.dtype.kind == "f")


@settings(max_examples=150, deadline=None)
@given(_arrays, st.data())
def test_every_cut_of_a_valid_file_is_refused(a, data):
    raw = idx_bytes(a, _CODES[a.dtype])
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DataError):
        parse_idx(raw[:cut])


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_random_gzip_content_or_broken_gzip_raises_only_data_error(raw, compress):
    import tempfile

    data = gzip.compress(raw) if compress else b"\x1f\x8b" + raw
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/x.gz"
        with open(path, "wb") as f:
            f.write(data)
        try:
            out = read_idx(path)
        except DataError:
            return
    assert_reads_exactly(gzip.decompress(data), out)
