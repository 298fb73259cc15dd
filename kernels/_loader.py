"""Find the .cu sources next to this file, show them, and compile them on demand.

Compilation goes through ``cupy.RawModule`` (NVRTC) the first time a kernel is asked for
and is cached per source file (and version of it), device and set of options, so importing
:mod:`kernels` costs nothing and needs no CuPy.
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
def _module(name: str, device_id: int, options: tuple[str, ...], version: int):
    import cupy  # only here: the CPU path never needs CuPy

    return cupy.RawModule(code=source(name), options=options)


@functools.lru_cache(maxsize=None)
def _function(name: str, kernel: str, device_id: int, options: tuple[str, ...], version: int):
    # A stubbed exercise would stop the kernel with __trap(), which leaves the CUDA context
    # unusable for the rest of the process: say which exercise it is before launching.
    # (Raised, not cached: the next call looks again.)
    stubs = exercise_stubs(name, kernel)
    if stubs:
        raise NotImplementedError(stubs[0])
    return _module(name, device_id, options, version).get_function(kernel)


def get_function(name: str, kernel: str, options: tuple[str, ...] = ("--std=c++14",)):
    """The compiled kernel ``kernel`` of ``name.cu`` for the current device.

    Compiled, and checked for exercise stubs, once per version of the file: a student who
    edits the .cu file gets the new code at the next call.  Inside ``emulation.emulate()``,
    the kernel compiled for the CPU emulation instead.
    """
    from . import emulation

    if emulation.active():
        return emulation.get_function(name, kernel, options)
    import cupy

    # Every launch asks for its kernel, so this path is kept short: a stat of the file
    # (about a microsecond) instead of reading and parsing it (about 40 us).
    version = _path(name).stat().st_mtime_ns
    return _function(name, kernel, cupy.cuda.runtime.getDevice(), tuple(options), version)


# ----------------------------------------------------------------------------- exercise stubs

_STUB = re.compile(r'MINITL_EXERCISE_STUB\(\s*"((?:[^"\\]|\\.)*)"\s*\)')
_MACRO = re.compile(r"^#define\s+(\w+)\(((?:[^\n]*\\\n)*[^\n]*)", re.MULTILINE)
_CALL = re.compile(r"\b(\w+)\s*\(")


def _close(text: str, i: int, open_: str, close: str) -> int:
    """The index just past the bracket that closes the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        depth += (text[j] == open_) - (text[j] == close)
        if depth == 0:
            return j + 1
    return len(text)


def _code_units(text: str) -> dict[str, tuple[int, int]]:
    """{name: (start, end)} of every top-level function and function-like macro in a .cu text
    (comments removed)."""
    units = {m.group(1): (m.start(), m.end()) for m in _MACRO.finditer(text)}
    # Blank out the macros, then walk the top level: `name(...)` followed by `{` is a definition.
    code = _MACRO.sub(lambda m: " " * len(m.group(0)), text)
    i = 0
    while (m := _CALL.search(code, i)) is not None:
        after = _close(code, m.end() - 1, "(", ")")
        rest = code[after:].lstrip()
        if rest.startswith("{"):
            brace = len(code) - len(rest)
            end = _close(code, brace, "{", "}")
            units.setdefault(m.group(1), (m.start(), end))
            i = end
        else:
            i = after if rest.startswith((";", ",")) or not rest else m.end()
    return units


def exercise_stubs(name: str, kernel: str, text: str | None = None) -> list[str]:
    """The messages of the exercise stubs (``MINITL_EXERCISE_STUB("exercise id: hint")``) that
    kernel ``kernel`` of ``name.cu`` (or of the source ``text``) can reach, through the
    functions and macros it uses."""
    text = re.sub(r"//[^\n]*", "", text if text is not None else _path(name).read_text(encoding="utf-8"))
    stubs = [(m.start(), m.group(1)) for m in _STUB.finditer(text)]
    if not stubs:
        return []
    units = _code_units(text)
    words = {unit: set(re.findall(r"\b\w+\b", text[a:b])) for unit, (a, b) in units.items()}
    # a kernel made by a macro (SOFTMAX_WARP_FORWARD(softmax_forward_warp8, ...)) starts at it
    start = {kernel} if kernel in units else {
        m.group(1) for m in re.finditer(r"^(\w+)\([^\n]*\b" + re.escape(kernel) + r"\b", text, re.MULTILINE)}
    seen, todo = set(), list(start)
    while todo:
        unit = todo.pop()
        if unit in seen or unit not in units:
            continue
        seen.add(unit)
        todo += [w for w in words[unit] if w in units and w not in seen]
    return [message for pos, message in stubs
            if any(units[u][0] <= pos < units[u][1] for u in seen)]
