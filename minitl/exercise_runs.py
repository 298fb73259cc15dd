"""Running the tests of exercises, and what their results say.

* ``check(ID)``: run one exercise's tests in a student copy and end with one line that says
  where the student stands, for example
  ``autograd.mul_backward: blocked by autograd.topological_sort (still a stub); do that one first``.
* ``status()``: every exercise of the copy: not started (its region still holds the stub),
  failing (with the first failing assertion), or passing.
* ``verify()``: for each exercise alone, prove that its tests fail once its region is stubbed
  (``tests/test_exercise_integrity.py`` runs it over the whole library).
* ``find_prerequisites()``: for each exercise X alone, stub X and run *every* exercise's tests;
  a test of Y that fails with X's stub message means X is a prerequisite of Y. The result is
  committed in ``minitl/exercise_deps.json`` (``minitl exercises deps --write``), which
  ``list`` shows; ``check`` also reads blocking straight from the failures of its own run, so
  it stays right when that file is stale.

A "blocked" exercise is one whose tests fail with the NotImplementedError of a *different*
exercise's stub: the student has to do that one first.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from minitl import exercises as ex
from minitl.exercises import ExerciseError

DEPS_FILE = Path("minitl/exercise_deps.json")

# A stub's message starts "exercise <id>: "; a failure naming one reached that stub.
_STUB_MESSAGE = re.compile(r"exercise (?P<id>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*): ")

# Runs pytest under a memory limit (address space, in bytes; 0: none). A small launcher rather
# than subprocess's preexec_fn, which is unsafe when the caller runs threads (grading does).
_LIMITED_PYTEST = (
    "import resource, sys\n"
    "limit = int(sys.argv.pop(1))\n"
    "if limit:\n"
    "    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    "import pytest\n"
    "sys.exit(pytest.main(sys.argv[1:]))\n")


def pytest_env(project: Path) -> dict:
    """Environment for a pytest run that must import ``project``'s minitl, not an installed one."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project), env.get("PYTHONPATH")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def exercise_env(project: Path, batch: bool = False) -> dict:
    """pytest_env, with the fast paths off: an exercise's tests must run the reference code the
    student writes. ``batch`` (copies that are thrown away, runs side by side): no .pyc, no
    third-party pytest plugins (hypothesis's costs ~0.6 s a run; @given tests run without it),
    one BLAS thread per run."""
    env = pytest_env(project)
    env["MINITL_FASTPATH"] = "0"
    if batch:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
    return env


# --------------------------------------------------------------------------- one pytest run


@dataclass
class TestResult:
    """One test case as pytest's JUnit XML reports it."""

    nodeid: str       # tests/test_x.py::TestA::test_b[param]; for a collection error, the module
    outcome: str      # "passed", "failed", "skipped", or "error" (the module failed to import)
    message: str = ""
    text: str = ""

    @property
    def key(self) -> str:
        """The nodeid without parameters, as ``tests_by_exercise`` names tests."""
        return self.nodeid.split("[", 1)[0]

    @property
    def file(self) -> str:
        return self.nodeid.split("::", 1)[0]

    def one_line(self) -> str:
        """The failure in one line: the test's name and the first lines of its message."""
        if self.outcome == "error":
            return f"cannot import {self.file}: {collection_error(self.text)}"
        lines = [line.strip() for line in self.message.splitlines() if line.strip()]
        if lines and lines[0].rstrip(":") == "AssertionError" and len(lines) > 1:
            lines = lines[1:]  # numpy's assert_allclose puts its message on the next lines
        name = self.nodeid.split("::", 1)[-1]
        return shorten(f"{name}: {' '.join(lines[:2]) or 'failed'}")


def shorten(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def collection_error(text: str) -> str:
    """The last 'E   ...' line of a traceback (the error itself), with the file:line of a
    syntax error when there is one."""
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    where = re.findall(r'File "([^"]+)", line (\d+)', "\n".join(errors))
    last = errors[-1] if errors else (text.strip().splitlines() or ["unknown error"])[-1]
    return shorten(f"{last} ({where[-1][0]}:{where[-1][1]})" if where else last)


def parse_junit(path: Path, project: Path) -> list:
    """TestResults from a JUnit XML file written by a pytest run in ``project``."""
    if not path.is_file():
        return []
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError:
        return []
    results = []
    for case in root.iter("testcase"):
        classname, name = case.get("classname") or "", case.get("name") or ""
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if not classname:  # a module that failed to import: name is its dotted path
            nodeid = name.replace(".", "/") + ".py"
            results.append(TestResult(nodeid, "error", "collection failure",
                                      bad.text or "" if bad is not None else ""))
            continue
        parts = classname.split(".")
        for cut in range(len(parts), 0, -1):  # the longest prefix that is a file is the module
            if (project / Path(*parts[:cut])).with_suffix(".py").is_file():
                break
        nodeid = "::".join(["/".join(parts[:cut]) + ".py", *parts[cut:], name])
        if bad is not None:
            results.append(TestResult(nodeid, "failed", bad.get("message") or "", bad.text or ""))
        elif case.find("skipped") is not None:
            results.append(TestResult(nodeid, "skipped", case.find("skipped").get("message") or ""))
        else:
            results.append(TestResult(nodeid, "passed"))
    return results


@dataclass
class Run:
    """What one pytest run did."""

    returncode: int | None     # None when it was stopped for time
    results: list
    output: str = ""
    seconds: float = 0.0
    timed_out: bool = False


def run_pytest(project: Path, args, *, env=None, timeout=None, memory_mb=None,
               relay=None) -> Run:
    """pytest in ``project`` with ``args``; results read from its JUnit XML.

    ``timeout`` (seconds) stops the run and all it started; ``memory_mb`` caps its address
    space. ``relay`` (a text stream) receives the output line by line as it comes; else the
    output is kept in ``Run.output``.
    """
    env = env if env is not None else exercise_env(project)
    limit = int(memory_mb * 2 ** 20) if memory_mb else 0
    with tempfile.TemporaryDirectory(prefix="minitl-run-") as scratch:
        junit = Path(scratch) / "results.xml"
        cmd = [sys.executable, "-c", _LIMITED_PYTEST, str(limit), "-p", "no:cacheprovider",
               f"--junitxml={junit}", "-o", "junit_family=xunit2", *args]
        start = time.monotonic()
        # Its own process group, so that a time-out stops whatever the tests started too.
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=relay is None)
        output, timed_out = "", False
        try:
            if relay is not None:
                for line in proc.stdout:
                    if str(junit) not in line:  # "generated xml file: ...": ours, not the student's
                        relay.write(line)
                        relay.flush()
                proc.wait()
            else:
                output = proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            output = proc.communicate()[0]
        except BaseException:  # a broken pipe or Ctrl-C: stop the tests too
            proc.kill()
            proc.wait()
            raise
        seconds = time.monotonic() - start
        return Run(None if timed_out else proc.returncode, parse_junit(junit, project), output,
                   seconds, timed_out)


# --------------------------------------------------------------------------- what a run says


@dataclass
class Outcome:
    """Where one exercise stands after a run of its tests."""

    id: str
    state: str              # passing, failing, blocked, not started, timed out, error, skipped
    detail: str = ""
    blocked_by: tuple = ()

    @property
    def passed(self) -> bool:
        return self.state == "passing"

    def blocked_text(self) -> str:
        stubs = "still a stub" if len(self.blocked_by) == 1 else "still stubs"
        return f"blocked by {', '.join(self.blocked_by)} ({stubs})"

    def line(self) -> str:
        """The outcome in one line, as `check` ends."""
        if self.state == "blocked":
            what = "that one" if len(self.blocked_by) == 1 else "those"
            return f"{self.id}: {self.blocked_text()}; do {what} first"
        return f"{self.id}: {self.state}" + (f": {self.detail}" if self.detail else "")

    def status(self) -> tuple:
        """(not started | failing | passing, the detail in one line), as `status` shows it."""
        if self.state in ("passing", "not started"):
            return self.state, self.detail
        if self.state == "blocked":
            return "failing", self.line().split(": ", 1)[1]
        return "failing", self.detail if self.state == "failing" else f"{self.state}: {self.detail}"


def stubs_named(results: list, known) -> list:
    """The ids of exercises whose stub a failure reached, in order of appearance.

    Only the exception lines count (the message, and the traceback's "E   " lines, chained
    exceptions included): a long traceback also prints source code, which may show a stub
    that never ran.
    """
    named = []
    for result in results:
        raised = [result.message] + [line for line in result.text.splitlines() if line.startswith("E ")]
        for found in _STUB_MESSAGE.finditer("\n".join(raised)):
            if found.group("id") in known and found.group("id") not in named:
                named.append(found.group("id"))
    return named


def judge(ex_id: str, tests: list, run: Run, known, timeout=None) -> Outcome:
    """The Outcome of exercise ``ex_id`` (whose tests are ``tests``, as tests_by_exercise names
    them) in ``run``. ``known``: every exercise id, to tell a stub message from other text."""
    if run.timed_out:
        limit = f" {timeout:g} s" if timeout else " the time limit"
        return Outcome(ex_id, "timed out", f"its tests ran past{limit} (an endless loop?)")
    wanted, files = set(tests), {t.split("::", 1)[0] for t in tests}
    mine = [r for r in run.results if r.key in wanted]
    broken = [r for r in run.results if r.outcome == "error" and r.file in files]
    failed = [r for r in mine if r.outcome == "failed"]
    if failed:
        named = stubs_named(failed, known)
        others = tuple(i for i in named if i != ex_id)
        if others:
            return Outcome(ex_id, "blocked", blocked_by=others)
        if ex_id in named:
            return Outcome(ex_id, "not started", "its region still raises NotImplementedError")
        return Outcome(ex_id, "failing", failed[0].one_line())
    if broken:
        return Outcome(ex_id, "error", broken[0].one_line())
    if not mine:
        reason = collection_error(run.output) if run.returncode not in (0, 5) else "no test ran"
        return Outcome(ex_id, "error", reason)
    passed = [r for r in mine if r.outcome == "passed"]
    if not passed:
        return Outcome(ex_id, "skipped", f"every test was skipped: {mine[0].message}")
    return Outcome(ex_id, "passing", f"{len(passed)} test{'s' * (len(passed) != 1)} passed")


def test_files(tests: list) -> list:
    return sorted({t.split("::", 1)[0] for t in tests})


# --------------------------------------------------------------------------- check


def check(ex_id: str, root=None, pytest_args=(), out=None) -> int:
    """Run the tests of one exercise in the copy at ``root`` (default: the one around the
    current folder), show pytest's output, and end with the exercise's Outcome in one line.
    Returns pytest's exit code."""
    out = out or sys.stdout
    root = ex.copy_root(root)
    found = ex.find_exercises(root)
    ex.select(found, [ex_id])  # an unknown id is an error, not "no tests ran"
    tests = ex.tests_by_exercise(root).get(ex_id, [])
    if not tests:
        raise ExerciseError(f"no test carries @pytest.mark.exercise({ex_id!r}) under {root / ex.TESTS_DIR}")
    stubs = {e.id for e in found if e.is_stub}
    waiting = [p for p in load_prerequisites(root).get(ex_id, []) if p in stubs and p != ex_id]
    if waiting:
        print(f"note: the tests of {ex_id} also run {', '.join(waiting)}, still "
              f"{'a stub' if len(waiting) == 1 else 'stubs'} in this copy", file=out)
    args = ["--exercise", ex_id, *test_files(tests), *pytest_args]
    if getattr(out, "isatty", lambda: False)() and not any(a.startswith("--color") for a in pytest_args):
        args.insert(0, "--color=yes")  # pytest writes into a pipe here; keep the terminal's colours
    run = run_pytest(root, args, relay=out)
    outcome = judge(ex_id, tests, run, {e.id for e in found})
    if outcome.state == "not started":
        region = next(e for e in found if e.id == ex_id)
        outcome.detail = f"its region at {region.location} still raises NotImplementedError"
    print(outcome.line(), file=out)
    return run.returncode


# --------------------------------------------------------------------------- status


@dataclass
class StatusRow:
    lesson: int | None
    outcome: Outcome


def status(root=None, timeout: float = 600, memory_mb=None) -> tuple:
    """(rows, note) for the student copy at ``root``: one StatusRow per exercise the copy holds,
    in lesson order. A region still holding its stub is "not started" without running anything;
    the tests of the others run in one pytest process (under ``timeout``; if that runs out,
    each exercise runs alone, so that one endless loop does not hide the rest)."""
    root = ex.copy_root(root)
    found = ex.find_exercises(root)
    known = {e.id for e in found}
    syllabus = ex.Syllabus.read(root)
    handed_out = ex.handed_out(root)
    note = ""
    if handed_out is not None:
        kept = [e for e in found if e.id in set(handed_out)]
        if len(kept) < len(found):
            note = (f"{len(found) - len(kept)} more exercises are solved in this copy (lessons "
                    f"not handed out yet); student_copy.json lists the {len(kept)} above")
        found = kept
    found = syllabus.sort(found)
    tests = ex.tests_by_exercise(root)
    outcomes = {e.id: Outcome(e.id, "not started", f"{e.location} still raises NotImplementedError")
                for e in found if e.is_stub}
    started = [e.id for e in found if not e.is_stub]
    for ex_id in started:
        if not tests.get(ex_id):
            outcomes[ex_id] = Outcome(ex_id, "error", "no test carries this exercise")
    to_run = [i for i in started if i not in outcomes]
    if to_run:
        args = [a for i in to_run for a in ("--exercise", i)]
        args += test_files([t for i in to_run for t in tests[i]])
        run = run_pytest(root, ["-q", *args], timeout=timeout, memory_mb=memory_mb)
        if run.timed_out and len(to_run) > 1:
            for ex_id in to_run:
                one = run_pytest(root, ["-q", "--exercise", ex_id, *test_files(tests[ex_id])],
                                 timeout=timeout, memory_mb=memory_mb)
                outcomes[ex_id] = judge(ex_id, tests[ex_id], one, known, timeout)
        else:
            for ex_id in to_run:
                outcomes[ex_id] = judge(ex_id, tests[ex_id], run, known, timeout)
    return [StatusRow(syllabus.lesson_of(e.id), outcomes[e.id]) for e in found], note


def summarize_states(outcomes: list) -> str:
    """"27 exercises: 3 passing, 2 failing, 22 not started" (blocked and broken count as failing)."""
    passing = sum(o.state == "passing" for o in outcomes)
    not_started = sum(o.state == "not started" for o in outcomes)
    failing = len(outcomes) - passing - not_started
    return (f"{len(outcomes)} exercises: {passing} passing, {failing} failing, "
            f"{not_started} not started")


# --------------------------------------------------------------------------- verify


@dataclass
class StubResult:
    """What the tests of one exercise did on a copy where only that exercise is stubbed."""

    id: str
    tests: list = field(default_factory=list)     # statically found "file::name"
    failed: list = field(default_factory=list)
    passed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    reached_stub: bool = False                    # a failure shows the stub's own message
    imported_from: str = ""                       # where the copy's pytest found minitl
    problem: str = ""                             # empty when the exercise is sound
    output: str = field(default="", repr=False)   # pytest's stdout and stderr

    @property
    def ok(self) -> bool:
        return not self.problem

    def summary(self) -> str:
        counts = f"{len(self.failed)} fail / {len(self.passed)} pass / {len(self.skipped)} skip"
        return f"{'ok  ' if self.ok else 'FAIL'} {self.id:<36} {counts:<28} {self.problem}"


def _inside(path: str, folder: Path) -> bool:
    return bool(path) and Path(folder).resolve() in Path(path).resolve().parents


def _run_with_one_stub(exercise, root: Path, scratch: Path, args) -> tuple:
    """(Run, where pytest imported minitl from) for ``args`` run in a fresh copy of ``root``
    in which ``exercise`` alone is stubbed."""
    copy = scratch / exercise.id
    ex.export(copy, only=[exercise.id], root=root)
    try:
        # Not -q: quiet mode hides the report header, where conftest says which minitl it imports.
        run = run_pytest(copy, ["--tb=short", *args], env=exercise_env(copy, batch=True))
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    found = re.search(r"^minitl under test: (.*)$", run.output, re.MULTILINE)
    return run, found.group(1).strip() if found else ""


def _stub_one(exercise, root: Path, tests: list, scratch: Path) -> StubResult:
    """Export a copy with ``exercise`` alone stubbed and run the tests that carry it there."""
    result = StubResult(exercise.id, tests=tests)
    if not tests:
        result.problem = f"no test carries @pytest.mark.exercise({exercise.id!r})"
        return result
    run, result.imported_from = _run_with_one_stub(
        exercise, root, scratch, ["--exercise", exercise.id, *test_files(tests)])
    result.output = run.output
    result.failed, result.passed, result.skipped = (
        [r.nodeid for r in run.results if r.outcome in kinds]
        for kinds in (("failed", "error"), ("passed",), ("skipped",)))
    result.reached_stub = exercise.id in stubs_named(run.results, {exercise.id})
    copy = scratch / exercise.id
    if not _inside(result.imported_from, copy):
        result.problem = (f"the tests imported minitl from {result.imported_from or '?'}, "
                          f"not from the student copy")
    elif run.returncode not in (0, 1, 5) or (run.returncode == 1 and not result.failed):
        result.problem = f"pytest exited with {run.returncode} (collection or usage error)"
    elif result.passed:
        result.problem = "passes on the stub: " + ", ".join(result.passed)
    elif not result.failed:
        result.problem = ("no test ran" if not result.skipped else "every test was skipped")
    elif not result.reached_stub:
        result.problem = "tests fail, but none with the stub's NotImplementedError"
    return result


def verify(root=None, only=None, jobs: int = 2) -> list:
    """For each exercise alone: stub it in a fresh copy, run its tests there, expect them to fail.

    Returns one StubResult per exercise. Sound means: at least one test carries the exercise,
    every one of them that runs fails on the stub, one of the failures is the stub's own
    NotImplementedError, and pytest imported the copy's minitl.
    """
    root = Path(root).resolve() if root else ex.project_root()
    chosen = ex.select(ex.find_exercises(root), only)
    tests = ex.tests_by_exercise(root)
    with tempfile.TemporaryDirectory(prefix="minitl-verify-") as scratch, \
            ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_stub_one, e, root, tests.get(e.id, []), Path(scratch))
                   for e in chosen]
        return [f.result() for f in futures]


# --------------------------------------------------------------------------- prerequisites


def find_prerequisites(root=None, only=None, jobs: int = 2) -> dict:
    """{exercise Y: [exercises X whose stub makes a test of Y fail]}, found by running.

    For each X (all, or those in ``only``): a fresh copy with X alone stubbed runs every test
    that carries an exercise mark; a failure of a test of Y != X whose message or traceback
    shows X's stub message makes X a prerequisite of Y.
    """
    root = Path(root).resolve() if root else ex.project_root()
    found = ex.find_exercises(root)
    chosen = ex.select(found, only)
    tests = ex.tests_by_exercise(root)
    owners: dict = {}  # test key -> the exercises it carries
    for ex_id, keys in tests.items():
        for key in keys:
            owners.setdefault(key, []).append(ex_id)
    files = test_files([t for keys in tests.values() for t in keys])
    prerequisites: dict = {}

    def one(exercise):
        run, _ = _run_with_one_stub(exercise, root, Path(scratch), ["-q", "-m", "exercise", *files])
        hit = [r for r in run.results if r.outcome == "failed"
               and exercise.id in stubs_named([r], {exercise.id})]
        return exercise.id, {y for r in hit for y in owners.get(r.key, []) if y != exercise.id}

    with tempfile.TemporaryDirectory(prefix="minitl-deps-") as scratch, \
            ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for x, dependents in pool.map(one, chosen):
            for y in dependents:
                prerequisites.setdefault(y, set()).add(x)
    order = {e.id: n for n, e in enumerate(ex.Syllabus.read(root).sort(found))}
    return {y: sorted(xs, key=order.get) for y, xs in sorted(prerequisites.items())}


def write_prerequisites(prerequisites: dict, exercise_ids, root=None) -> Path:
    """Write ``minitl/exercise_deps.json`` (the committed, generated file) atomically."""
    root = Path(root).resolve() if root else ex.project_root()
    content = {
        "about": "Generated by `minitl exercises deps --write`, do not edit: for each exercise X, "
                 "a copy with X alone stubbed ran every exercise's tests; 'prerequisites' lists X "
                 "under Y when a test of Y failed with X's stub message. Regenerate after adding "
                 "or changing exercises or their tests (a test checks that the ids agree).",
        "exercises": sorted(exercise_ids),
        "prerequisites": prerequisites,
    }
    path = root / DEPS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_deps(root) -> dict:
    """The committed prerequisites file of ``root`` as a dict, or {} when there is none."""
    try:
        return json.loads((Path(root) / DEPS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def load_prerequisites(root) -> dict:
    return load_deps(root).get("prerequisites", {})
