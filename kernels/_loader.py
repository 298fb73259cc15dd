"""Find the .cu sources next to this file, show them, and compile them on demand.

Compilation goes through ``cupy.RawModule`` (NVRTC) the first time a kernel is asked for
and is cached per source file, device and set of options, so importing :mod:`kernels`
costs nothing and needs no CuPy.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cu_files() -> list[Path]:
    """The CUDA sources of the package, sorted by name (matmul.cu, softmax.cu)."""
    return sorted(HERE.glob("*.cu"))


def _path(name: str) -> Path:
    path = HERE / (name if name.endswith(".cu") else name + ".cu")
    if not path.is_file():
        known = ", ".join(p.stem for p in cu_files())
        raise ValueError(f"no kernel source {name!r}; the sources are: {known}")
    return path


def source(name: str, kernel: str | None = None) -> str:
    """The text of ``name.cu``; with ``kernel``, only that kernel.

    ``source("matmul", "sgemm_tiled")`` returns the comment block just above the kernel
    and the kernel itself, up to its closing brace, which is how lesson 12 shows one rung
    at a time on a machine without a GPU.
    """
    text = _path(name).read_text(encoding="utf-8")
    if kernel is None:
        return text
    # The definition: the first unindented line naming it before a "(", which skips
    # calls (indented) and comments.
    match = re.search(r"^(?=[A-Za-z_])[^\n]*?\b" + re.escape(kernel) + r"\s*\(", text, flags=re.MULTILINE)
    if match is None:
        raise ValueError(f"no kernel or function {kernel!r} in {name}.cu")
    lines = text[: match.start()].split("\n")[:-1]
    # Walk back over what introduces it: its comment block, #defines, a template line.
    start = len(lines)
    while start > 0:
        line = lines[start - 1]
        if line.startswith(("//", "#", "template", "extern")):
            start -= 1
        elif not line.strip() and start > 1 and lines[start - 2].startswith("#define"):
            start -= 1  # the blank line between a kernel's #defines and the kernel
        else:
            break
    head = "\n".join(lines[start:])
    # The body ends where its braces balance (the .cu files put no braces in strings).
    depth, end, opened = 0, None, False
    for i in range(match.end(), len(text)):
        if text[i] == "{":
            depth, opened = depth + 1, True
        elif text[i] == "}":
            depth -= 1
            if opened and depth == 0:
                end = i + 1
                break
    if end is None:
        raise ValueError(f"unbalanced braces after {kernel!r} in {name}.cu")
    return (head + "\n" if head else "") + text[match.start():end] + "\n"


@functools.lru_cache(maxsize=None)
def _module(name: str, device_id: int, options: tuple[str, ...]):
    import cupy  # only here: the CPU path never needs CuPy

    return cupy.RawModule(code=source(name), options=options)


def get_function(name: str, kernel: str, options: tuple[str, ...] = ("--std=c++14",)):
    """The compiled kernel ``kernel`` of ``name.cu`` for the current device."""
    import cupy

    return _module(name, cupy.cuda.Device().id, tuple(options)).get_function(kernel)
