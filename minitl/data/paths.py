"""Where minitl finds its data, offline first.

Every loader in ``minitl.data`` asks this module for a file. The search order is the one
DESIGN.md promises, and the error at the end of it is meant to be read by a student who has
never installed a dataset:

1. ``$MINITL_DATA/<dataset>/``           (a folder you chose; put files there by hand)
2. ``<cache>/<dataset>/``                (``$XDG_CACHE_HOME/minitl`` or ``~/.cache/minitl``)
3. system folders of a Debian package    (``SYSTEM_DIRS``, e.g. ``dataset-fashion-mnist``)
4. a download from the official source into the cache, verified, written atomically
   (skipped when ``$MINITL_OFFLINE`` is set, as it should be in CI)

If all four fail, :class:`DataNotFoundError` lists each place looked at and how to get the data.
The cache folder is also where other parts of minitl keep what they compute once
(decoded arrays, encoded corpora, pretrained weights): see :func:`cache_dir`.
"""
from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Sequence

# Folders that Debian packages install datasets into. A dict (not constants buried in the
# loaders) so that a test can empty it and see the "nothing found" path.
SYSTEM_DIRS: dict[str, list[Path]] = {
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
    "gcide": [Path("/usr/share/dictd")],
}

# How to get each dataset by hand; quoted in the error message.
INSTALL_HINTS: dict[str, str] = {
    "fashion-mnist": "sudo apt-get install dataset-fashion-mnist",
    "gcide": "sudo apt-get install dict-gcide",
}

# A closed network should cost a student seconds, not minutes.
DOWNLOAD_TIMEOUT_S = 10.0


class DataNotFoundError(FileNotFoundError):
    """A dataset file is in none of the places minitl looks, and could not be downloaded."""


def data_home() -> Path | None:
    """The folder named by ``$MINITL_DATA``, or None when the variable is unset or empty."""
    value = os.environ.get("MINITL_DATA", "").strip()
    return Path(value).expanduser() if value else None


def cache_dir(*parts: str, create: bool = True) -> Path:
    """minitl's cache folder (``$XDG_CACHE_HOME/minitl``, else ``~/.cache/minitl``), or a sub-folder.

    ``cache_dir("weights")`` is where pretrained weights belong; ``cache_dir("fashion-mnist")``
    holds downloads and decoded arrays. The folder is created unless ``create=False``.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    # The XDG spec says a relative $XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    path = base.joinpath("minitl", *parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def downloads_allowed() -> bool:
    """False when ``$MINITL_OFFLINE`` is set to anything but "", "0" or "false"."""
    return os.environ.get("MINITL_OFFLINE", "").strip().lower() in ("", "0", "false", "no")


def search_dirs(dataset: str) -> list[Path]:
    """The folders searched for ``dataset``, in order (they need not exist)."""
    dirs = []
    home = data_home()
    if home is not None:
        dirs.append(home / dataset)
    dirs.append(cache_dir(dataset, create=False))
    dirs.extend(SYSTEM_DIRS.get(dataset, []))
    return dirs


def find_file(dataset: str, names: Sequence[str]) -> Path | None:
    """The first existing ``dir/name`` over :func:`search_dirs` (outer loop) and ``names`` (inner).

    ``names`` lists acceptable spellings of one file, e.g. the ``.gz`` and the plain one.
    """
    for folder in search_dirs(dataset):
        for name in names:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def download(url: str, dest: Path, check: Callable[[Path], None] | None = None,
             timeout: float | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically and return ``dest``.

    The bytes go to a temporary file beside ``dest``; ``check(tmp_path)`` (e.g. a checksum test)
    runs on it, and only then ``os.replace`` moves it into place. So a killed download or a
    corrupt one never leaves a file that a later run would trust.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(
                url, timeout=DOWNLOAD_TIMEOUT_S if timeout is None else timeout) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        if check is not None:
            check(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def locate(dataset: str, filename: str, url: str | None = None,
           check: Callable[[Path], None] | None = None,
           alternatives: Iterable[str] = ()) -> Path:
    """Find ``filename`` of ``dataset`` (searching, then downloading), or raise DataNotFoundError.

    ``alternatives`` are other acceptable names of the same file (e.g. without ``.gz``).
    ``url`` is where the official copy lives; ``check`` verifies a download before it is kept.
    """
    names = [filename, *alternatives]
    found = find_file(dataset, names)
    if found is not None:
        return found

    looked = [str(folder / name) for folder in search_dirs(dataset) for name in names]
    if url is None:
        download_note = "no official download for this file"
    elif not downloads_allowed():
        download_note = f"download of {url} skipped: $MINITL_OFFLINE is set"
    else:
        try:
            return download(url, cache_dir(dataset) / filename, check=check)
        except Exception as exc:  # any failure (DNS, timeout, HTTP, checksum) ends in the hint below
            download_note = f"download of {url} failed: {exc}"
    raise DataNotFoundError(_not_found_message(dataset, filename, looked, download_note))


def _not_found_message(dataset: str, filename: str, looked: list[str], download_note: str) -> str:
    lines = [f"{dataset}: cannot find {filename}. Looked in:"]
    lines += [f"  - {place}" for place in looked]
    lines.append(f"  - {download_note}")
    lines.append("To get the data, do one of:")
    if dataset in INSTALL_HINTS:
        lines.append(f"  * {INSTALL_HINTS[dataset]}")
    lines.append(f"  * put the files in $MINITL_DATA/{dataset}/ "
                 f"(export MINITL_DATA=/some/folder) or in {cache_dir(dataset, create=False)}/")
    return "\n".join(lines)
