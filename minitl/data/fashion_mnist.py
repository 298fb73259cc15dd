"""Fashion-MNIST: the image dataset the chapter's vision examples fine-tune and probe on.

70,000 grey 28x28 pictures of clothing in 10 classes (60,000 train, 10,000 test), by Zalando
Research, in the IDX format (see ``minitl.data.idx``). Offline first: the files come from
``$MINITL_DATA/fashion-mnist/``, the cache, or the Debian package ``dataset-fashion-mnist``,
and only then from the official server (see ``minitl.data.paths``).

Checksums are the SHA-256 of the *decompressed* IDX bytes: Debian recompressed the ``.gz``
files, so their compressed bytes differ from the official ones while the content is the same.

Speed: decoding the 26 MB ``train-images`` gzip takes a few tenths of a second on every call,
so the first load saves the decoded arrays as ``.npy`` files in the cache, after checking their
SHA-256; later loads read those (several times faster, see the module's tests/report).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .idx import CorruptDataError, parse_idx, read_idx_bytes
from .paths import cache_dir, locate

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# file stem -> (SHA-256 of the decompressed IDX bytes, shape). Computed from the official
# content (as shipped, recompressed, by the Debian package dataset-fashion-mnist).
FASHION_MNIST_FILES: dict[str, tuple[str, tuple[int, ...]]] = {
    "train-images-idx3-ubyte":
        ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", (60000, 28, 28)),
    "train-labels-idx1-ubyte":
        ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", (60000,)),
    "t10k-images-idx3-ubyte":
        ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", (10000, 28, 28)),
    "t10k-labels-idx1-ubyte":
        ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", (10000,)),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def fashion_mnist(split: str = "train", *, verify: bool = False,
                  cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load a split of Fashion-MNIST as ``(images, labels)``.

    images: uint8, shape (N, 28, 28), 0 = background; labels: int64, shape (N,), values 0..9
    indexing ``FASHION_MNIST_CLASSES``. N is 60,000 for ``"train"`` and 10,000 for ``"test"``.

    verify: check the SHA-256 of the content on this call (downloads and cache writes are
        always checked; plain loads check only the IDX header and sizes, to stay fast).
    cache: read/write the decoded arrays as ``.npy`` in ``cache_dir("fashion-mnist")``.
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    prefix = _SPLIT_PREFIX[split]
    images = _load_array(f"{prefix}-images-idx3-ubyte", verify=verify, cache=cache)
    labels = _load_array(f"{prefix}-labels-idx1-ubyte", verify=verify, cache=cache)
    # int64 labels are what an index into a loss (cross-entropy's gather) wants.
    return images, labels.astype(np.int64)


def _idx_sha256(array: np.ndarray) -> str:
    """SHA-256 of the IDX file that holds ``array`` (uint8), rebuilt from the array itself.

    This lets a cached ``.npy`` be verified against the official checksum without the gzip.
    """
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    digest = hashlib.sha256(header)
    digest.update(np.ascontiguousarray(array, dtype=np.uint8).data)
    return digest.hexdigest()


def _check_sha256(actual: str, stem: str, where: str, fix: str) -> None:
    expected = FASHION_MNIST_FILES[stem][0]
    if actual != expected:
        raise CorruptDataError(
            f"{where}: SHA-256 of the {stem} content is {actual}, expected {expected}; {fix}")


def _load_array(stem: str, *, verify: bool, cache: bool) -> np.ndarray:
    npy = cache_dir("fashion-mnist", create=False) / f"{stem}.npy"
    if cache and npy.is_file():
        array = np.load(npy, allow_pickle=False)
        if verify:
            _check_sha256(_idx_sha256(array), stem, str(npy), f"delete {npy} to rebuild it")
        return array

    path = locate("fashion-mnist", f"{stem}.gz", url=f"{FASHION_MNIST_URL}{stem}.gz",
                  check=lambda tmp: _check_sha256(
                      hashlib.sha256(read_idx_bytes(tmp)).hexdigest(), stem, "download",
                      "the download is corrupt; try again"),
                  alternatives=[stem])
    data = read_idx_bytes(path)
    if verify or cache:  # never cache unverified content: later loads trust the cache
        _check_sha256(hashlib.sha256(data).hexdigest(), stem, str(path),
                      "reinstall the package or replace the file")
    array = parse_idx(data, name=str(path))
    expected_shape = FASHION_MNIST_FILES[stem][1]
    if array.shape != expected_shape or array.dtype != np.uint8:
        raise CorruptDataError(f"{path}: expected uint8 {expected_shape}, found {array.dtype} {array.shape}")
    if cache:
        _save_npy_atomically(npy, array)
    return array


def _save_npy_atomically(path: Path, array: np.ndarray) -> None:
    """np.save through a temporary file + os.replace, so a reader never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                np.save(out, array, allow_pickle=False)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:  # a read-only home must not stop a student from loading the data
        warnings.warn(f"could not cache Fashion-MNIST in {path.parent}: {exc}", stacklevel=3)
