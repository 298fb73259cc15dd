"""Plant bugs in the CUDA kernels and show that the emulated kernel tests catch each one.

    python tests/plant_cuda_bugs.py [--only WORD ...] [--list] [--sanitized-only]

For each bug below: copy kernels/*.cu to a temporary folder, make the one change, and run the
kernel tests of that file (tests/test_cuda_emulation.py) against the copy
(MINITL_CUDA_EMU_SOURCES), first as built normally, then, if that pass stays green, built with
AddressSanitizer and UBSan (where out-of-bounds and misaligned accesses show).  A bug counts as
caught when either pass fails.  Every run is a subprocess, so a bug that corrupts memory ends
that run, not this script.  The exit status is the number of bugs not caught.

tests/test_cuda_emulation.py::test_a_planted_bug_is_caught runs two of these in CI; this script
is the longer check (a few minutes on two cores).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/test_cuda_emulation.py"
# The tests that check values; the emulation's own tests (probe, stubs, builds) are left out.
SELECT = {"matmul": "matmul or sgemm", "softmax": "softmax and not launch"}
META = " and not stub and not planted and not sanitizers and not probe and not builds and not reached"

# (name, file, text, replacement, which occurrence when the text is not unique)
BUGS = [
    ("naive: no bounds guard", "matmul", "if (row >= M || col >= N) return;", "", 0),
    ("tiled: no barrier after the loads", "matmul",
     "            __syncthreads();  // the tiles are complete before anyone reads them\n", "", 0),
    ("tiled: no barrier before the next loads", "matmul",
     "            __syncthreads();  // everyone is done reading before the next tiles overwrite them\n", "", 0),
    ("tiled: no K guard on A's load", "matmul", "(row0 + ty < M && k0 + tx < K) ? Ab", "(row0 + ty < M) ? Ab", 0),
    ("blocktile: no barrier after the loads", "matmul", "            __syncthreads();\n", "", 0),
    ("warptile: float4 whatever the alignment", "matmul",
     "return (reinterpret_cast<unsigned long long>(p) & 15) == 0 && (ld & 3) == 0 && (stride & 3) == 0;",
     "return true;", 0),
    ("warptile: float4 loads past the row's end", "matmul", "if (vec && col + 3 < cols) {", "if (vec && col < cols) {", 0),
    ("warptile: no barrier between tiles", "matmul",
     "            __syncthreads();  // next buffer complete; this one no longer being read\n", "", 0),
    ("warptile: no row guard in the epilogue", "matmul", "if (row >= M) continue;", "", 0),
    ("warptile: float4 stores past the row's end", "matmul", "if (vec_c && col + 3 < N) {", "if (vec_c && col < N) {", 0),
    ("softmax: -inf not special", "softmax", "return x == NEG_INF ? 0.0f : expf(x - m);", "return expf(x - m);", 0),
    ("softmax: a group's mask is the whole warp", "softmax",
     "return lanes == WARP ? FULL_MASK : ((1u << lanes) - 1) << first;", "return FULL_MASK;", 0),
    ("softmax: max butterfly one step short", "softmax",
     "for (int o = lanes / 2; o > 0; o /= 2) v = fmaxf(", "for (int o = lanes / 2; o > 1; o /= 2) v = fmaxf(", 0),
    ("softmax: sum butterfly shuffles the wrong lane", "softmax",
     "o /= 2) v += __shfl_xor_sync(mask, v, o);", "o /= 2) v += __shfl_xor_sync(mask, v, o / 2);", 0),
    ("softmax: block sum without its first barrier", "softmax",
     "    if (lane == 0) shared_v[warp] = v;\n    __syncthreads();\n", "    if (lane == 0) shared_v[warp] = v;\n", 1),
    ("softmax: warp rows read past the row's end", "softmax",
     "v[i] = c < cols ? xr[c] : NEG_INF;", "v[i] = c < cols + 1 ? xr[c] : NEG_INF;", 0),
    ("softmax: register rows use float4 when misaligned", "softmax",
     "const bool vec = (cols % 4 == 0) && aligned16(xr) && aligned16(yr);", "const bool vec = (cols % 4 == 0);", 0),
    ("softmax: streamed rows read past the end", "softmax",
     "q[u] = i + u * stride < n ? row[i + u * stride] : fill;", "q[u] = i < n ? row[i + u * stride] : fill;", 0),
]


def plant(folder: Path, bug) -> None:
    name, file, old, new, nth = bug
    for cu in (ROOT / "kernels").glob("*.cu"):
        (folder / cu.name).write_text(cu.read_text())
    path = folder / f"{file}.cu"
    text = path.read_text()
    parts = text.split(old)
    if len(parts) < nth + 2:
        raise SystemExit(f"{name}: the text to change is not in {file}.cu (occurrence {nth})")
    path.write_text(old.join(parts[:nth + 1]) + new + old.join(parts[nth + 1:]))


def run_tests(folder: Path, file: str, sanitize: bool) -> tuple[str, str]:
    """(how the tests failed: "" if they passed, the last lines of their output)."""
    sys.path.insert(0, str(ROOT))
    from minitl.kernels import emulation

    env = emulation.sanitizer_env() if sanitize else dict(os.environ)
    env.update(MINITL_CUDA_EMU_SOURCES=str(folder), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    if sanitize:
        env["MINITL_EMU_SUBSET"] = "sanitize"
    # -s: a sanitizer's report goes to stderr as the process ends; pytest's capture would lose it
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-s", "-p", "no:cacheprovider", TESTS, "-k",
           f"({SELECT[file]}){META}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    lines = [line for line in text.splitlines() if line.strip()]
    if proc.returncode == 0:
        how = ""
    elif "ERROR: AddressSanitizer" in text or "runtime error:" in text:
        how = "a sanitizer report"
        lines = [line for line in lines if "ERROR: AddressSanitizer" in line or "runtime error:" in line] or lines
    elif proc.returncode < 0:
        how = f"a crash (signal {-proc.returncode})"
    else:
        how = "failing tests"
        lines = [line for line in lines if line.startswith(("FAILED", "ERROR", "E "))] or lines
    return how, "\n".join(lines[-3:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="WORD", help="bugs whose name contains one of these words")
    parser.add_argument("--list", action="store_true", help="list the bugs and stop")
    parser.add_argument("--sanitized-only", action="store_true",
                        help="run only the sanitized pass (to see what the sanitizers catch on their own)")
    opts = parser.parse_args(argv)
    bugs = [b for b in BUGS if not opts.only or any(w in b[0] for w in opts.only)]
    if opts.list:
        print("\n".join(b[0] for b in bugs))
        return 0
    missed = 0
    for bug in bugs:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="minitl-planted-") as tmp:
            plant(Path(tmp), bug)
            how, tail = ("", "") if opts.sanitized_only else run_tests(Path(tmp), bug[1], sanitize=False)
            if not how:
                how, tail = run_tests(Path(tmp), bug[1], sanitize=True)
                how = how and how + " (sanitized build)"
        missed += not how
        verdict = f"caught: {how}" if how else "NOT CAUGHT"
        print(f"{bug[0]:<52} {verdict:<44} {time.perf_counter() - start:5.1f} s")
        print("    " + tail.replace("\n", "\n    "), flush=True)
    print(f"\n{len(bugs) - missed} of {len(bugs)} planted bugs caught")
    return missed


if __name__ == "__main__":
    sys.exit(main())
