"""minitl.cpu_runtime: `import minitl` changes nothing process-wide; `tune()` does, once, and
MINITL_CPU_TUNING=0 turns it off. Each case runs in a fresh Python process, since the settings
concern the whole process."""
import ctypes.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GLIBC = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"),
                                                      "mallinfo2")

# The probe reports what a program sees after `import minitl` (and tune() when asked): the
# environment, what tune() recorded, and whether glibc served a 64 MiB array with mmap (its
# default for blocks above 32 MiB at most) or from the heap (after tune's mallopt).
PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, json, os, sys
    sys.path.insert(0, {root!r})
    import minitl, numpy as np
    calls = int(sys.argv[1])
    results = [minitl.cpu_runtime.tune() for _ in range(calls)]
    report = {{"timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"), "tuned": minitl.cpu_runtime.tuned(),
              "results": results}}
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if hasattr(libc, "mallinfo2"):
        class Mallinfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
        libc.mallinfo2.restype = Mallinfo2
        big = np.ones(1 << 24, dtype=np.float32)
        report["mmapped_mib"] = libc.mallinfo2().hblkhd >> 20
    print(json.dumps(report))
""").format(root=str(ROOT))


def probe(calls, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "MINITL_CPU_TUNING")}
    result = subprocess.run([sys.executable, "-c", PROBE, str(calls)], capture_output=True, text=True,
                            timeout=120, env={**clean, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_minitl_changes_nothing_process_wide():
    seen = probe(calls=0)
    assert seen["timeout"] is None  # OpenBLAS's spin time left alone
    assert seen["tuned"] is None  # tune() never ran
    if GLIBC:
        assert seen["mmapped_mib"] >= 64  # glibc's own mmap threshold still in force: no mallopt


def _openblas_loaded():
    from threadpoolctl import threadpool_info
    return any(info.get("internal_api") == "openblas" for info in threadpool_info())


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt and mallinfo2")
def test_tune_applies_both_settings_once():
    seen = probe(calls=2)
    first, second = seen["results"]
    assert first == second == seen["tuned"]  # idempotent: the second call changes nothing
    assert first["keep_freed_memory"] is True
    assert seen["mmapped_mib"] == 0  # the 64 MiB array now comes from the heap
    if _openblas_loaded():
        assert first["stop_blas_spinning"] is True
        assert seen["timeout"] == "20"


def test_tuning_can_be_turned_off():
    seen = probe(calls=1, MINITL_CPU_TUNING="0")
    assert seen["results"] == [{}] and seen["timeout"] is None
    if GLIBC:
        assert seen["mmapped_mib"] >= 64


def test_the_minitl_command_tunes():
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from minitl import cli, cpu_runtime\n"
            "assert cpu_runtime.tuned() is None\n"
            "cli.main(['lesson'])\n"  # lists the lessons: quick
            "print(cpu_runtime.tuned() is not None)")
    assert _run_python(code).splitlines()[-1] == "True"


def _run_python(code, **env):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(not _openblas_loaded() or (os.cpu_count() or 1) < 2, reason="NumPy on a multi-core OpenBLAS")
def test_idle_blas_threads_stop_spinning_after_tune():
    """Without the setting an OpenBLAS worker burns a core for ~0.1 s after each product. The
    probe sums the CPU time of four sleeps that each follow a product: on a loaded machine
    the spinning thread gets less of a core, but four sleeps still show it."""
    probe_code = ("import os, resource, sys, time; sys.path.insert(0, {root!r}); import numpy as np{tune}\n"
                  "from threadpoolctl import threadpool_limits\n"
                  "a = np.ones((600, 600), dtype=np.float32)\n"
                  "idle = 0.0\n"
                  "with threadpool_limits(2):\n"
                  "    for _ in range(4):\n"
                  "        a @ a; a @ a\n"
                  "        r0 = resource.getrusage(resource.RUSAGE_SELF); time.sleep(0.25)\n"
                  "        r1 = resource.getrusage(resource.RUSAGE_SELF)\n"
                  "        idle += r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime\n"
                  "print(idle)")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    os.environ.pop("OPENBLAS_THREAD_TIMEOUT", None)
    try:
        spinning = float(_run_python(probe_code.format(root=str(ROOT), tune="; import minitl")))
        tuned = float(_run_python(probe_code.format(root=str(ROOT), tune="; import minitl; minitl.cpu_runtime.tune()")))
    finally:
        os.environ.clear()
        os.environ.update(env)
    assert tuned < 0.03  # four sleeps: idle BLAS threads asleep within ~1 ms of each product
    assert spinning > 0.05  # the spinning that tune() removes (~0.4 s of CPU on an idle machine)
