"""Run the CUDA kernels of ``minitl.kernels`` on the CPU: correctness without a GPU.

The unchanged ``.cu`` files are compiled with the system's g++ after a small header that
supplies the part of CUDA they use (``cuda_emu.h``); each CUDA thread of a block runs as a
fiber, ``__syncthreads`` and the warp shuffles are barriers between fibers, and the blocks run
one after another (``runtime.cpp``).  Inside :func:`emulate` the Python wrappers of
``minitl.kernels`` take NumPy arrays and launch the emulated kernels with exactly the grid,
block and arguments they would hand to CuPy, and every argument is checked against the
kernel's C signature the way the GPU would need it to match::

    import numpy as np
    from minitl import kernels
    from minitl.kernels import emulation

    with emulation.emulate():
        c = kernels.matmul(a, b)            # a, b: float32 NumPy arrays; c: NumPy
        y = kernels.softmax(x)

What it checks: the values (against NumPy, in the tests), the launch configuration against
CUDA's limits and the kernel's ``__launch_bounds__``, scalar argument types against the C
parameter types, barriers and shuffles that a GPU would hang on (reported as a deadlock), and,
built with ``sanitize=True`` and run under AddressSanitizer, every out-of-bounds or misaligned
access.  What it does not: speed (nothing here says how fast a kernel is on a GPU), memory
ordering between blocks (blocks run one at a time), and code that relies on a warp's lanes
running in lockstep without ``__syncwarp`` (each lane runs alone until its next barrier, so
such code gives wrong values here, as it may on a GPU since Volta).

Builds are cached by source hash under ``$MINITL_CUDA_EMU_CACHE`` (default
``~/.cache/minitl/cuda-emu``), so an edited ``.cu`` file is rebuilt on its next launch.
"""
from __future__ import annotations

import ast
import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy

HERE = Path(__file__).resolve().parent
_SUPPORT_FILES = ("cuda_emu.h", "registry.h", "runtime.cpp")

# CUDA's launch limits (compute capability 3.0 and later).
MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_BLOCK = (1024, 1024, 64)
MAX_THREADS_PER_BLOCK = 1024

# C parameter type -> the NumPy dtype an argument must have (scalars), or that a pointer's
# array must have.  CuPy passes a NumPy scalar as the bytes of its own dtype, whatever the
# kernel expects, so a mismatch would be read as garbage on the GPU.
_C_TYPES = {
    "bool": "bool", "char": "int8", "signed char": "int8", "unsigned char": "uint8",
    "short": "int16", "unsigned short": "uint16", "int": "int32", "unsigned int": "uint32",
    "long": "int64", "unsigned long": "uint64", "long long": "int64",
    "unsigned long long": "uint64", "float": "float32", "double": "float64",
}


class EmulationError(RuntimeError):
    """The emulation cannot run here (no C++ compiler) or could not build a .cu file."""


class LaunchError(RuntimeError):
    """A launch CUDA would refuse, or a kernel that went wrong while it ran: a deadlock (a GPU
    would hang), an invalid memory access, ``__trap()``."""


def compiler() -> str | None:
    """The C++ compiler the emulation uses: ``$CXX`` if set, else g++ on PATH, else None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def available() -> bool:
    return compiler() is not None


def cache_dir() -> Path:
    path = Path(os.environ.get("MINITL_CUDA_EMU_CACHE") or Path.home() / ".cache" / "minitl" / "cuda-emu")
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path
    except OSError:
        path = Path(tempfile.gettempdir()) / "minitl-cuda-emu"
        path.mkdir(parents=True, exist_ok=True)
        return path


# ----------------------------------------------------------------------------- switching on

_state = threading.local()


def _settings() -> dict:
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack[-1] if _state.stack else {}


def active() -> bool:
    """True inside :func:`emulate` (the wrappers then run on NumPy arrays, on the CPU)."""
    return bool(_settings())


@contextlib.contextmanager
def emulate(sources: str | Path | None = None, sanitize: bool | None = None):
    """Inside this block, ``minitl.kernels``' wrappers take NumPy arrays and run the emulated kernels.

    sources: a folder whose .cu files to build instead of the package's own (a copy with a
    planted bug, say; default: $MINITL_CUDA_EMU_SOURCES if set).  sanitize: build with
    AddressSanitizer and UBSan (default: MINITL_CUDA_EMU_SANITIZE=1 in the environment); the
    process must then have the ASan runtime loaded first (see :func:`sanitizer_env`).
    """
    sources = sources or os.environ.get("MINITL_CUDA_EMU_SOURCES") or None
    if sanitize is None:
        sanitize = os.environ.get("MINITL_CUDA_EMU_SANITIZE") == "1"
    _settings()
    _state.stack.append({"sources": Path(sources) if sources else None, "sanitize": bool(sanitize)})
    try:
        yield
    finally:
        _state.stack.pop()


def sanitizer_env(env: dict | None = None) -> dict:
    """Environment for a Python subprocess that runs sanitized builds: the ASan runtime preloaded
    (it must come before every other library), MINITL_CUDA_EMU_SANITIZE=1, and reports that end
    the process on the first error."""
    env = dict(os.environ if env is None else env)
    libasan = _runtime_library("libasan.so")
    if libasan is None:
        raise EmulationError(f"{compiler()} has no AddressSanitizer runtime (libasan.so)")
    env["LD_PRELOAD"] = " ".join(p for p in (libasan, env.get("LD_PRELOAD")) if p)
    # Python itself is not leak-free at exit; its allocator's tricks are not errors.
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env["MINITL_CUDA_EMU_SANITIZE"] = "1"
    return env


def _runtime_library(name: str) -> str | None:
    cxx = compiler()
    if cxx is None:
        return None
    out = _run([cxx, f"-print-file-name={name}"]).stdout.strip()
    return str(Path(out).resolve()) if out and os.path.isabs(out) and Path(out).exists() else None


# ----------------------------------------------------------------------------- building

_BASE_FLAGS = ["-std=c++17", "-fPIC", "-pthread", "-fno-strict-aliasing",
               "-Wno-unknown-pragmas", "-Wno-attributes"]
_FAST_FLAGS = ["-O2"]
# -O0: the sanitized build compiles 4x faster than at -O1, and its runs are short.
_SANITIZE_FLAGS = ["-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=all"]

_KERNEL_DEF = re.compile(
    r'extern\s+"C"\s+MINITL_EMU_GLOBAL\s+void\s+'
    r"(?:MINITL_EMU_BOUNDS\s*\((?P<bounds>[^()]*(?:\([^()]*\)[^()]*)*)\)\s*)?"
    r"(?P<name>[A-Za-z_]\w*)\s*\(")


def _nvrtc_to_gcc(options) -> list[str]:
    """The -D/-U options of an NVRTC option list, for g++; the rest concern code generation."""
    out, options = [], list(options)
    for i, opt in enumerate(options):
        if opt in ("-D", "-U") and i + 1 < len(options):
            out += [opt + options[i + 1]]
        elif opt.startswith(("-D", "-U")) and len(opt) > 2:
            out.append(opt)
        elif opt.startswith(("--define-macro=", "--undefine-macro=")):
            out.append(("-D" if opt.startswith("--define") else "-U") + opt.split("=", 1)[1])
    return out


def _eval_int(expr: str) -> int:
    """A launch bound like "32 * 32", already macro-expanded: integers and + - * / ( ) only."""
    tree = ast.parse(expr.strip().rstrip("uUlL"), mode="eval")

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Div)):
            a, b = ev(node.left), ev(node.right)
            return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}.get(type(node.op), a // b if b else 0)
        raise ValueError(expr)

    return int(ev(tree))


def _scan(cu: Path, defines: list[str]) -> dict[str, int]:
    """{kernel name: max threads per block} of every extern "C" __global__ kernel in cu."""
    cmd = [compiler(), "-E", "-P", "-x", "c++", "-std=c++17", "-DMINITL_EMU_SCAN", *defines,
           "-include", str(HERE / "cuda_emu.h"), str(cu)]
    proc = _run(cmd)
    if proc.returncode:
        raise EmulationError(f"preprocessing {cu} failed:\n{proc.stderr}")
    found = {}
    for m in _KERNEL_DEF.finditer(proc.stdout):
        bounds = m.group("bounds")
        try:
            found[m.group("name")] = _eval_int(bounds.split(",")[0]) if bounds else MAX_THREADS_PER_BLOCK
        except (ValueError, SyntaxError):
            found[m.group("name")] = MAX_THREADS_PER_BLOCK
    return found


def _registry_source(cu: Path, names) -> str:
    entries = ",\n".join(f"    MINITL_EMU_KERNEL({n})" for n in names) or "    {}"
    return (f'#include "cuda_emu.h"\n#include "{cu}"\n#include "registry.h"\n'
            f"namespace minitl_emu {{\nextern const KernelEntry kernels[] = {{\n{entries}\n}};\n"
            f"extern const int kernel_count = {len(names)};\n}}\n")


_locks: dict = {}
_locks_guard = threading.Lock()


def _lock(path: Path) -> threading.Lock:
    """One lock per build target: two threads never build the same file, different files build in parallel."""
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part if isinstance(part, bytes) else json.dumps(part).encode()).digest())
    return h.hexdigest()[:20]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    """Runs the compiler; without LD_PRELOAD, which in a sanitized process holds the ASan runtime."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def _compile(cmd: list[str], what: str) -> None:
    proc = _run(cmd)
    if proc.returncode:
        raise EmulationError(f"{what} does not compile for the CPU emulation:\n{' '.join(cmd)}\n{proc.stderr}")


def _runtime_object(flags: list[str]) -> Path:
    """runtime.cpp compiled once per set of flags (it is the same for every .cu file)."""
    support = [(HERE / f).read_bytes() for f in _SUPPORT_FILES]
    target = cache_dir() / f"runtime-{_digest(*support, [compiler(), _compiler_version(), flags])}.o"
    with _lock(target):
        if target.exists():
            return target
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.o")
        _compile([compiler(), *flags, "-c", f"-I{HERE}", "-o", str(tmp), str(HERE / "runtime.cpp")], "runtime.cpp")
        os.replace(tmp, target)
    return target


def build(cu: str | Path, options=(), sanitize: bool = False) -> Path:
    """Compile one .cu file into a shared library for the emulation (cached); its path.

    Raises EmulationError with the compiler's messages when the source does not compile.
    """
    cu = Path(cu).resolve()
    if not available():
        raise EmulationError("the CUDA emulation needs a C++17 compiler: install g++ "
                             "(apt-get install g++) or set CXX")
    defines = _nvrtc_to_gcc(options)
    flags = _BASE_FLAGS + (_SANITIZE_FLAGS if sanitize else _FAST_FLAGS)
    support = [(HERE / f).read_bytes() for f in _SUPPORT_FILES]
    key = _digest(cu.read_bytes(), *support, [compiler(), _compiler_version(), flags, defines, str(cu)])
    target = cache_dir() / f"{cu.stem}-{key}{'-asan' if sanitize else ''}.so"
    if target.exists() and target.with_suffix(".json").exists():
        return target
    with _lock(target):
        if target.exists() and target.with_suffix(".json").exists():
            return target
        runtime = _runtime_object(flags)
        kernels = _scan(cu, defines)
        with tempfile.TemporaryDirectory(prefix="minitl-cuda-emu-") as tmp:
            registry = Path(tmp) / "registry.cpp"
            registry.write_text(_registry_source(cu, list(kernels)), encoding="utf-8")
            out = Path(tmp) / target.name
            _compile([compiler(), *flags, *defines, "-shared", f"-I{HERE}", "-o", str(out), str(registry),
                      str(runtime)], cu.name)
            sidecar = Path(tmp) / "kernels.json"
            sidecar.write_text(json.dumps({"source": str(cu), "kernels": kernels}), encoding="utf-8")
            os.replace(sidecar, target.with_suffix(".json"))
            os.replace(out, target)
    return target


_versions: dict = {}


def _compiler_version() -> str:
    cxx = compiler()
    if cxx not in _versions:
        _versions[cxx] = _run([cxx, "--version"]).stdout.split("\n")[0]
    return _versions[cxx]


# ----------------------------------------------------------------------------- launching

@dataclass
class Parameter:
    ctype: str          # as C spells it: "const float*", "int", "long long"
    pointer: bool
    const: bool
    dtype: numpy.dtype | None


def _parameter(ctype: str) -> Parameter:
    pointer = ctype.endswith("*")
    base = ctype.rstrip("*")
    const = base.startswith("const ")
    base = base.removeprefix("const ")
    dtype = numpy.dtype(_C_TYPES[base]) if base in _C_TYPES else None
    return Parameter(ctype, pointer, const, dtype)


class Module:
    """One built .cu file: its kernels by name."""

    def __init__(self, path: Path):
        self.path = path
        info = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        self.source = info["source"]
        self.lib = ctypes.CDLL(str(path))
        lib = self.lib
        lib.minitl_emu_kernel_name.restype = ctypes.c_char_p
        lib.minitl_emu_kernel_signature.restype = ctypes.c_char_p
        lib.minitl_emu_shared_bytes.restype = ctypes.c_ulonglong
        lib.minitl_emu_launch.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                                          ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_int]
        self.kernels = {}
        for i in range(lib.minitl_emu_kernel_count()):
            name = lib.minitl_emu_kernel_name(i).decode()
            signature = lib.minitl_emu_kernel_signature(i).decode()
            params = [_parameter(t) for t in signature.split(",")] if signature else []
            self.kernels[name] = EmulatedKernel(self, i, name, params, info["kernels"][name])

    def get_function(self, name: str) -> "EmulatedKernel":
        if name not in self.kernels:
            raise LaunchError(f"no extern \"C\" __global__ kernel {name!r} in {self.source}; "
                              f"it has: {', '.join(self.kernels) or 'none'}")
        return self.kernels[name]


def _dims(value, what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, numpy.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, numpy.integer)) for d in dims):
        raise TypeError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


class EmulatedKernel:
    """Called like CuPy's RawKernel: ``kernel(grid, block, args, shared_mem=0)``."""

    def __init__(self, module: Module, index: int, name: str, params: list[Parameter], max_threads: int):
        self.module, self.index, self.name, self.params = module, index, name, params
        self.max_threads_per_block = max_threads

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(p.ctype for p in self.params)})"

    def check_launch(self, grid, block, shared_mem: int = 0):
        """(grid, block) as 3-tuples; raises LaunchError for a launch CUDA would refuse."""
        grid, block = _dims(grid, "grid"), _dims(block, "block")
        for axis, (g, limit) in enumerate(zip(grid, MAX_GRID)):
            if not 1 <= g <= limit:
                raise LaunchError(f"{self.name}: grid dimension {'xyz'[axis]} = {g} is outside CUDA's "
                                  f"limit 1..{limit} (grid {grid}); CUDA refuses the launch")
        for axis, (b, limit) in enumerate(zip(block, MAX_BLOCK)):
            if not 1 <= b <= limit:
                raise LaunchError(f"{self.name}: block dimension {'xyz'[axis]} = {b} is outside CUDA's "
                                  f"limit 1..{limit} (block {block})")
        threads = block[0] * block[1] * block[2]
        if threads > min(MAX_THREADS_PER_BLOCK, self.max_threads_per_block):
            raise LaunchError(f"{self.name}: {threads} threads per block, more than its "
                              f"__launch_bounds__ ({self.max_threads_per_block}) or CUDA's 1024 allow")
        if shared_mem:
            raise LaunchError(f"{self.name}: dynamic shared memory ({shared_mem} bytes) is not "
                              f"emulated; the kernels here declare theirs statically")
        return grid, block

    def _argument(self, i: int, param: Parameter, value):
        where = f"{self.signature}: argument {i} ({param.ctype})"
        if param.pointer:
            if not isinstance(value, numpy.ndarray):
                raise TypeError(f"{where} must be an array, got {type(value).__name__}")
            if param.dtype is not None and value.dtype != param.dtype:
                raise TypeError(f"{where} must point to {param.dtype}, got an array of {value.dtype}")
            if not param.const and not value.flags.writeable:
                raise TypeError(f"{where}: the kernel writes through it, and the array is read-only")
            return ctypes.c_void_p(value.ctypes.data)
        if param.dtype is None:
            raise TypeError(f"{where}: the emulation cannot pass a {param.ctype}")
        if not isinstance(value, numpy.generic):
            raise TypeError(f"{where} must be a NumPy scalar of dtype {param.dtype}, got "
                            f"{type(value).__name__} {value!r}: CuPy passes Python ints and floats "
                            f"as 64-bit values, which a {param.ctype} parameter misreads")
        if value.dtype != param.dtype:
            raise TypeError(f"{where} must be numpy.{param.dtype}, got numpy.{value.dtype}: CuPy passes "
                            f"the {value.dtype.itemsize} bytes of the value as they are")
        return numpy.ctypeslib.as_ctypes_type(param.dtype)(value.item())

    def __call__(self, grid, block, args, *, shared_mem: int = 0, stream=None):
        grid, block = self.check_launch(grid, block, shared_mem)
        args = tuple(args)
        if len(args) != len(self.params):
            raise TypeError(f"{self.signature} takes {len(self.params)} arguments, got {len(args)}")
        holders = [self._argument(i, p, a) for i, (p, a) in enumerate(zip(self.params, args))]
        argv = (ctypes.c_void_p * max(1, len(holders)))(*[ctypes.addressof(h) for h in holders])
        message = ctypes.create_string_buffer(2048)
        with _launch_lock:  # one launch at a time in the process: they share the fault handlers
            code = self.module.lib.minitl_emu_launch(
                self.index, (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), argv, message, len(message))
        if code == 1:
            raise NotImplementedError(message.value.decode())
        if code:
            raise LaunchError(f"{self.name} (grid {grid}, block {block}): {message.value.decode()}")


_modules: dict[Path, Module] = {}
_launch_lock = threading.Lock()


def _asan_loaded() -> bool:
    try:
        return "libasan" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def load(cu: str | Path, options=(), sanitize: bool = False) -> Module:
    """The emulated module of a .cu file, built if needed."""
    if sanitize and not _asan_loaded():  # loading it anyway would end the process
        raise EmulationError("a sanitized build needs the ASan runtime loaded first: run Python "
                             "with the environment of emulation.sanitizer_env()")
    path = build(cu, options, sanitize)
    if path not in _modules:
        _modules[path] = Module(path)
    return _modules[path]


def prebuild(names=("matmul", "softmax"), sanitize: bool | None = None) -> list[Path]:
    """Build the emulation of several .cu files at once (g++ runs in parallel); their paths."""
    from concurrent.futures import ThreadPoolExecutor

    with emulate(sanitize=sanitize):
        settings = _settings()
        paths = [_source(name, settings) for name in names]
        with ThreadPoolExecutor(max_workers=len(paths)) as pool:
            return list(pool.map(lambda p: build(p, (), settings["sanitize"]), paths))


def _source(name: str, settings: dict) -> Path:
    from .._loader import _path

    folder = settings.get("sources")
    return (folder / (name if name.endswith(".cu") else name + ".cu")) if folder else _path(name)


def get_function(name: str, kernel: str, options=()) -> EmulatedKernel:
    """The emulated kernel ``kernel`` of ``name.cu``, as ``minitl.kernels.get_function`` returns a
    CuPy one: from the package's sources, or those :func:`emulate` was given."""
    settings = _settings()
    return load(_source(name, settings), options, settings.get("sanitize", False)).get_function(kernel)
