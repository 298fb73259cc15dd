"""The IDX reader (minitl.data.idx) on small files each test writes by hand with struct."""
import gzip
import struct

import numpy as np
import pytest

from minitl.data.idx import CorruptDataError, parse_idx, read_idx, write_idx


def idx_bytes(type_code, shape, payload):
    """An IDX file assembled field by field, independent of minitl's own writer."""
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def test_reads_uint8_images(tmp_path):
    pixels = bytes(range(24))
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_bytes(0x08, (2, 3, 4), pixels))
    array = read_idx(path)
    assert array.dtype == np.uint8 and array.shape == (2, 3, 4)
    np.testing.assert_array_equal(array.ravel(), np.arange(24))


def test_reads_big_endian_int32_gzipped(tmp_path):
    values = [1, -2, 70000, -(2 ** 31)]
    path = tmp_path / "labels-idx1-int.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x0C, (4,), struct.pack(">4i", *values))))
    array = read_idx(path)
    assert array.dtype == np.int32 and array.dtype.isnative
    assert array.tolist() == values


def test_reads_float32_and_float64(tmp_path):
    f32 = tmp_path / "f32"
    f32.write_bytes(idx_bytes(0x0D, (2, 2), struct.pack(">4f", 0.5, -1.25, 3.0, 1e-3)))
    np.testing.assert_allclose(read_idx(f32), np.array([[0.5, -1.25], [3.0, 1e-3]], np.float32))
    assert read_idx(f32).dtype == np.float32
    f64 = tmp_path / "f64"
    f64.write_bytes(idx_bytes(0x0E, (1,), struct.pack(">d", np.pi)))
    assert read_idx(f64).dtype == np.float64 and read_idx(f64)[0] == np.pi


def test_gzip_is_detected_by_content_not_name(tmp_path):
    plain = tmp_path / "named.gz"  # a plain file with a misleading name still reads
    plain.write_bytes(idx_bytes(0x08, (3,), b"\x01\x02\x03"))
    assert read_idx(plain).tolist() == [1, 2, 3]


def test_result_is_writable(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(0x08, (2,), b"\x05\x06"))
    array = read_idx(path)
    array[0] = 9  # would raise on a read-only view of the file's bytes
    assert array.tolist() == [9, 6]


def test_wrong_magic_is_named(tmp_path):
    path = tmp_path / "bad-magic"
    path.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(CorruptDataError, match=r"bad-magic: bad magic number 0x01000801"):
        read_idx(path)


def test_unknown_type_code_is_named(tmp_path):
    path = tmp_path / "bad-type"
    path.write_bytes(idx_bytes(0x0A, (1,), b"\x00"))
    with pytest.raises(CorruptDataError, match=r"bad-type: unknown IDX type code 0x0A"):
        read_idx(path)


def test_truncated_file_names_both_sizes(tmp_path):
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(idx_bytes(0x08, (2, 28, 28), bytes(2 * 784 - 10)))
    with pytest.raises(CorruptDataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message
    assert "1584 bytes" in message and "1574 bytes" in message  # expected 16+1568, actual 16+1558


def test_padded_file_is_an_error(tmp_path):
    path = tmp_path / "long.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x0B, (3,), bytes(6) + b"\x00")))
    with pytest.raises(CorruptDataError, match=r"long.gz: file is padded .* 14 bytes, but the file has 15"):
        read_idx(path)


def test_truncated_header(tmp_path):
    with pytest.raises(CorruptDataError, match="truncated header: 3 dimensions need 16 bytes"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0, 0, 1]), name="h")
    with pytest.raises(CorruptDataError, match="too short"):
        parse_idx(b"\x00\x00", name="h")


def test_broken_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (100,), bytes(100)))[:-12])
    with pytest.raises(CorruptDataError, match="cut.gz: broken gzip stream"):
        read_idx(path)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_write_then_read_round_trip(tmp_path, dtype, name):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_writer_matches_the_specification_byte_for_byte(tmp_path):
    path = write_idx(tmp_path / "w", np.array([[1, 2], [3, 4]], dtype=np.int16))
    assert path.read_bytes() == idx_bytes(0x0B, (2, 2), struct.pack(">4h", 1, 2, 3, 4))
