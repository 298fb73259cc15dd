"""The IDX file format, in which MNIST and Fashion-MNIST are distributed.

An IDX file is a tiny header followed by one array, all big-endian::

    bytes 0-1   0x00 0x00           (the magic number starts with two zero bytes)
    byte  2     type code           0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                                    0x0D float32, 0x0E float64
    byte  3     ndim                number of dimensions
    ndim x 4    uint32 sizes        one per dimension, big-endian
    the rest    the elements        row-major (C order), big-endian

Fashion-MNIST's images are ``0x00000803`` (uint8, 3 dims: N x 28 x 28) and its labels
``0x00000801`` (uint8, 1 dim). The reader checks every field of the header and that the file
holds exactly as many bytes as the header promises, because a truncated download otherwise
turns into silently wrong pixels.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

# type code -> big-endian dtype, exactly as in the format's specification
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

GZIP_MAGIC = b"\x1f\x8b"


class CorruptDataError(ValueError):
    """A data file is not what its format says it must be (bad header, wrong size, bad checksum)."""


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The raw (decompressed) bytes of an IDX file, gzipped or not.

    Compression is recognised by the gzip magic bytes, not by the file name, so a ``.gz`` that
    someone already unpacked (or a plain file named ``.gz``) still reads.
    """
    data = Path(path).read_bytes()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:  # EOFError: the gzip stream itself is cut short
            raise CorruptDataError(f"{path}: broken gzip stream ({exc})") from exc
    return data


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an IDX file into a native-endian numpy array (``name`` is for errors)."""
    if len(data) < 4:
        raise CorruptDataError(f"{name}: {len(data)} bytes is too short for an IDX header (4 bytes)")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise CorruptDataError(
            f"{name}: bad magic number 0x{data[:4].hex()}: an IDX file starts with two zero bytes")
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise CorruptDataError(f"{name}: unknown IDX type code 0x{type_code:02X} (known: {known})")
    if ndim == 0:
        raise CorruptDataError(f"{name}: IDX header says 0 dimensions")

    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise CorruptDataError(
            f"{name}: truncated header: {ndim} dimensions need {header_size} bytes, file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "padded (extra bytes at the end)"
        raise CorruptDataError(
            f"{name}: file is {problem}: header says shape {shape} of {dtype.name} "
            f"= {expected} bytes, but the file has {len(data)} bytes")
    # astype copies into native byte order, so the result is writable and fast to compute with.
    flat = np.frombuffer(data, dtype=dtype, offset=header_size)
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) and return its array; raises CorruptDataError on bad input."""
    return parse_idx(read_idx_bytes(path), name=str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``compress`` or when the name ends in ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    for code, dtype in IDX_DTYPES.items():
        if dtype.newbyteorder("=") == array.dtype.newbyteorder("="):
            break
    else:
        raise ValueError(f"IDX has no type code for dtype {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, not {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=dtype).tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path
