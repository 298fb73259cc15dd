"""Fashion-MNIST loading (minitl.data.fashion_mnist) and the search for data (minitl.data.paths).

The real-data tests need the Debian package dataset-fashion-mnist (CI installs it); every
test points the cache at a temporary folder so it neither reads nor fills the user's cache.
"""
import sys

import numpy as np
import pytest

from minitl.data import paths
from minitl.data.fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_FILES, fashion_mnist
from minitl.data.idx import CorruptDataError, write_idx
from minitl.data.paths import DataNotFoundError, cache_dir

SYSTEM = paths.SYSTEM_DIRS["fashion-mnist"][0]
have_data = pytest.mark.skipif(
    not (SYSTEM / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST is not installed in {SYSTEM} (sudo apt-get install dataset-fashion-mnist)")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MINITL_DATA", raising=False)
    monkeypatch.setenv("MINITL_OFFLINE", "1")
    return tmp_path / "cache" / "minitl" / "fashion-mnist"


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No data anywhere: empty $MINITL_DATA and home, no system folders, no network."""
    monkeypatch.setenv("MINITL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setitem(paths.SYSTEM_DIRS, "fashion-mnist", [tmp_path / "system"])
    monkeypatch.setenv("MINITL_OFFLINE", "1")
    return tmp_path


def test_cache_dir_respects_xdg_and_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("weights") == tmp_path / "xdg" / "minitl" / "weights"
    assert (tmp_path / "xdg" / "minitl" / "weights").is_dir()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir(create=False) == tmp_path / "home" / ".cache" / "minitl"


def test_missing_data_error_lists_every_place_and_the_fix(nowhere):
    with pytest.raises(DataNotFoundError) as info:
        fashion_mnist("test", cache=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    home_cache = nowhere / "home" / ".cache" / "minitl" / "fashion-mnist"
    for place in [nowhere / "data" / "fashion-mnist", home_cache, nowhere / "system"]:
        assert str(place / "t10k-images-idx3-ubyte.gz") in message
    assert "$MINITL_OFFLINE is set" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "$MINITL_DATA/fashion-mnist/" in message


def test_failed_download_is_reported_fast(nowhere, monkeypatch):
    # A closed port on localhost refuses at once: the error must name the URL and why it failed.
    monkeypatch.delenv("MINITL_OFFLINE")
    # (the package's attribute fashion_mnist is the function; its module is found through it)
    monkeypatch.setattr(sys.modules[fashion_mnist.__module__], "FASHION_MNIST_URL", "http://127.0.0.1:9/")
    with pytest.raises(DataNotFoundError,
                       match=r"download of http://127.0.0.1:9/t10k-images-idx3-ubyte.gz failed"):
        fashion_mnist("test", cache=False)
    assert not list((nowhere / "home").rglob("*.part"))  # no half-written file left in the cache


def test_files_in_minitl_data_are_found_and_checked(nowhere):
    # Files of the right names but the wrong content: found in $MINITL_DATA, then rejected.
    folder = nowhere / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((10000, 28, 28), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(10000, np.uint8))
    images, labels = fashion_mnist("test", cache=False)  # no checksum asked: header checks only
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte: SHA-256 .* expected 5b4141f0"):
        fashion_mnist("test", verify=True, cache=False)


def test_bad_split():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        fashion_mnist("validation")


@have_data
def test_test_split_is_the_real_one(fresh_cache):
    images, labels = fashion_mnist("test", verify=True, cache=False)
    assert images.dtype == np.uint8 and images.shape == (10000, 28, 28)
    assert labels.dtype == np.int64 and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10  # the test split is balanced
    assert labels[:5].tolist() == [9, 2, 1, 1, 6]        # Ankle boot, Pullover, Trouser, Trouser, Shirt
    assert FASHION_MNIST_CLASSES[labels[0]] == "Ankle boot"
    assert images.min() == 0 and images.max() == 255
    assert not fresh_cache.exists()  # cache=False writes nothing


@have_data
def test_cache_round_trip_and_verification(fresh_cache):
    first = fashion_mnist("test")
    cached = fresh_cache / "t10k-images-idx3-ubyte.npy"
    assert cached.is_file()
    second = fashion_mnist("test", verify=True)  # verifies the .npy against the official SHA-256
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    # A tampered cache is caught by verify=True, and the message says how to fix it.
    tampered = second[0].copy()
    tampered[0, 0, 0] ^= 1
    np.save(cached, tampered)
    with pytest.raises(CorruptDataError, match="delete .*t10k-images-idx3-ubyte.npy"):
        fashion_mnist("test", verify=True)


@have_data
def test_train_split_shapes(fresh_cache):
    images, labels = fashion_mnist("train", cache=False)
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert np.bincount(labels).tolist() == [6000] * 10
    assert len(FASHION_MNIST_CLASSES) == 10 and set(FASHION_MNIST_FILES) >= {
        "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}


@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server over a folder: the download path, tested without the internet."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_with_a_bad_checksum_is_not_kept(nowhere, monkeypatch, http_folder):
    folder, url = http_folder
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((10000, 28, 28), np.uint8))
    monkeypatch.delenv("MINITL_OFFLINE")
    monkeypatch.setattr(sys.modules[fashion_mnist.__module__], "FASHION_MNIST_URL", url)
    with pytest.raises(DataNotFoundError, match=r"t10k-images-idx3-ubyte.gz failed: download: SHA-256"):
        fashion_mnist("test", cache=False)
    assert not [p for p in (nowhere / "home").rglob("*") if p.is_file()]  # nothing half-trusted left


@have_data
def test_download_of_the_real_files(nowhere, monkeypatch, http_folder):
    import shutil

    folder, url = http_folder
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(SYSTEM / f"{stem}.gz", folder)
    monkeypatch.delenv("MINITL_OFFLINE")
    monkeypatch.setattr(sys.modules[fashion_mnist.__module__], "FASHION_MNIST_URL", url)
    images, labels = fashion_mnist("test", cache=False)
    assert images.shape == (10000, 28, 28) and labels[:5].tolist() == [9, 2, 1, 1, 6]
    downloaded = nowhere / "home" / ".cache" / "minitl" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    assert downloaded.is_file()
