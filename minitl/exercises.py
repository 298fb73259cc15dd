"""Exercises: find them in the library, export a student copy, check one, verify them all.

The solution of an exercise lives in the library itself, between two marker comments inside a
function body, with its hint on the ``# hint:`` lines right after the opening marker::

    def backward(ctx, grad):
        # BEGIN EXERCISE autograd.matmul_backward
        # hint: grad_a = grad @ b^T and grad_b = a^T @ grad,
        # hint: then sum broadcast batch dims away (unbroadcast)
        a, b = ctx.saved_tensors
        ...
        # END EXERCISE

``export`` writes a *student copy* of the project in which that region becomes::

        # BEGIN EXERCISE autograd.matmul_backward
        # hint: grad_a = grad @ b^T and grad_b = a^T @ grad,
        # hint: then sum broadcast batch dims away (unbroadcast)
        raise NotImplementedError("exercise autograd.matmul_backward: grad_a = grad @ b^T ...")
        # END EXERCISE

The markers stay, so ``minitl exercises list`` and ``check`` work inside the copy too.

Tests of an exercise carry ``@pytest.mark.exercise("autograd.matmul_backward")``. A test suite
that stays green on the student copy teaches nothing, so ``verify`` proves, for each exercise
alone, that its tests fail once that one region is stubbed (``tests/test_exercise_integrity.py``
runs it over the whole library).

Only real comments count as markers: the scanner reads Python tokens, so a marker quoted in a
docstring (like the ones above) is never taken for an exercise.
"""
from __future__ import annotations

import ast
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tokenize
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# Folders of a project whose .py files may hold exercises.
SOURCE_DIRS = ("minitl", "kernels")
# Folder of the tests that carry @pytest.mark.exercise(...).
TESTS_DIR = "tests"

_BEGIN = re.compile(r"#\s*BEGIN EXERCISE\b\s*(?P<id>\S*)\s*(?P<rest>.*)$")
_END = re.compile(r"#\s*END EXERCISE\b\s*(?P<rest>.*)$")
_HINT = re.compile(r"#\s*hint:\s?(?P<text>.*)$")
_VALID_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

# What a non-git export leaves out: build outputs, caches, virtual environments.
_SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist",
              ".venv", "venv", ".tox", ".mypy_cache", ".ipynb_checkpoints", "minitl_output",
              "lesson_output"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")


class ExerciseError(Exception):
    """A malformed marker, an unknown id, or an export that would overwrite something."""


@dataclass(frozen=True)
class Exercise:
    """One exercise region. Lines are 1-based and inclusive; ``file`` is relative to the root."""

    id: str
    file: Path
    begin_line: int          # the "# BEGIN EXERCISE" line
    end_line: int            # the "# END EXERCISE" line
    hint_lines: tuple        # the hint comment lines, verbatim (without indentation)
    indent: str              # indentation of the BEGIN line; the stub is written at it

    @property
    def hint(self) -> str:
        """The hint as one sentence: the text of every ``# hint:`` line, joined by spaces."""
        texts = (_HINT.match(line).group("text").strip() for line in self.hint_lines)
        return " ".join(t for t in texts if t)

    @property
    def location(self) -> str:
        return f"{self.file.as_posix()}:{self.begin_line}"

    def stub_message(self) -> str:
        return f"exercise {self.id}: {self.hint}"


# --------------------------------------------------------------------------- finding exercises


def project_root(start: Path | str | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the current folder) holding ``minitl/``.

    Falls back to the project of the imported minitl package, so the commands also work from
    elsewhere. Starting from the current folder (not from the installed package) matters: a
    student runs ``minitl exercises check`` inside the exported copy, not the original.
    """
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "minitl" / "__init__.py").is_file():
            return folder
    return Path(__file__).resolve().parent.parent


def _comment_lines(text: str, filename: str) -> list:
    """(line number, column, text) of every comment that stands alone on its line."""
    lines = text.splitlines()
    found = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                row, col = tok.start
                if lines[row - 1][:col].strip() == "":
                    found.append((row, col, tok.string))
    except (tokenize.TokenError, SyntaxError) as err:
        raise ExerciseError(f"{filename}: cannot read Python tokens: {err}") from err
    return found


def _statement_lines(tree: ast.AST):
    """(lines where module statements start, [lines of statements inside each function])."""
    every = {n.lineno for n in ast.walk(tree) if isinstance(n, ast.stmt)}
    functions = [{n.lineno for n in ast.walk(fn) if isinstance(n, ast.stmt) and n is not fn}
                 for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return every, functions


def scan_file(path: Path, root: Path) -> list:
    """The exercises of one file, in order; raises ExerciseError naming file:line on bad markers."""
    rel = path.relative_to(root)
    text = path.read_text(encoding="utf-8")
    if "EXERCISE" not in text:  # cheap pre-filter: most files have none
        return []
    lines = text.splitlines()
    where = rel.as_posix()
    try:
        tree = ast.parse(text, filename=where)
    except SyntaxError as err:
        raise ExerciseError(f"{where}:{err.lineno}: not valid Python: {err.msg}") from err
    bodies = _statement_lines(tree)

    exercises, open_begin = [], None  # open_begin: (line, col, id) of an unclosed BEGIN
    for row, col, comment in _comment_lines(text, where):
        begin, end = _BEGIN.match(comment), _END.match(comment)
        if begin:
            ex_id = begin.group("id")
            if open_begin:
                raise ExerciseError(
                    f"{where}:{row}: BEGIN EXERCISE {ex_id} inside exercise {open_begin[2]} "
                    f"(opened at line {open_begin[0]}); exercises cannot nest")
            if not _VALID_ID.match(ex_id) or begin.group("rest"):
                raise ExerciseError(
                    f"{where}:{row}: expected '# BEGIN EXERCISE <id>' with a dotted id such as "
                    f"autograd.matmul_backward, got {comment!r}")
            open_begin = (row, col, ex_id)
        elif end:
            if not open_begin:
                raise ExerciseError(f"{where}:{row}: END EXERCISE without a BEGIN EXERCISE")
            exercises.append(_make_exercise(rel, lines, bodies, open_begin, row, col))
            open_begin = None
    if open_begin:
        raise ExerciseError(
            f"{where}:{open_begin[0]}: exercise {open_begin[2]} is never closed "
            f"(no '# END EXERCISE' after it)")
    return exercises


def _make_exercise(rel, lines, bodies, begin, end_row, end_col) -> Exercise:
    """Check one BEGIN..END region and turn it into an Exercise."""
    begin_row, begin_col, ex_id = begin
    where = rel.as_posix()
    indent = lines[begin_row - 1][:begin_col]
    if end_col != begin_col:
        raise ExerciseError(
            f"{where}:{end_row}: END EXERCISE of {ex_id} must be indented like its BEGIN "
            f"(line {begin_row})")
    every, functions = bodies
    inside = {line for line in every if begin_row < line < end_row}
    if not inside:
        raise ExerciseError(f"{where}:{begin_row}: exercise {ex_id} has no code to stub")
    # The region must sit in one function body: then replacing it by a `raise` keeps the module
    # importable, and the stub only fires when a student's code calls that function.
    if not any(inside <= lines for lines in functions):
        raise ExerciseError(
            f"{where}:{begin_row}: exercise {ex_id} is not inside a function body; markers must "
            f"wrap statements of one function so the stubbed module still imports")
    hint_lines = []
    for row in range(begin_row + 1, end_row):
        stripped = lines[row - 1].strip()
        if not _HINT.match(stripped):
            break
        hint_lines.append(stripped)
    if not hint_lines:
        raise ExerciseError(
            f"{where}:{begin_row}: exercise {ex_id} has no '# hint: ...' line right after "
            f"its BEGIN marker; students see the hint in the stub's error message")
    # Code less indented than the markers would leave the block after the stub out of place.
    for offset, line in enumerate(lines[begin_row:end_row - 1], start=begin_row + 1):
        if line.strip() and not line.startswith(indent):
            raise ExerciseError(
                f"{where}:{offset}: line of exercise {ex_id} is indented less than its "
                f"BEGIN marker (line {begin_row})")
    return Exercise(ex_id, rel, begin_row, end_row, tuple(hint_lines), indent)


def _source_files(root: Path):
    for folder in SOURCE_DIRS:
        base = root / folder
        if base.is_dir():
            for path in sorted(base.rglob("*.py")):
                if not any(part in _SKIP_DIRS for part in path.relative_to(root).parts):
                    yield path


def find_exercises(root: Path | str | None = None) -> list:
    """Every exercise of the project at ``root``, sorted by file and line.

    Raises ExerciseError for duplicate ids, unclosed, unopened or nested markers, markers
    outside a function body, and exercises without a hint or without code.
    """
    root = Path(root).resolve() if root else project_root()
    found, seen = [], {}
    for path in _source_files(root):
        for ex in scan_file(path, root):
            if ex.id in seen:
                raise ExerciseError(
                    f"{ex.location}: duplicate exercise id {ex.id} (first at {seen[ex.id].location})")
            seen[ex.id] = ex
            found.append(ex)
    return found


def _select(exercises: list, only) -> list:
    if only is None:
        return list(exercises)
    by_id = {ex.id: ex for ex in exercises}
    unknown = [i for i in only if i not in by_id]
    if unknown:
        known = ", ".join(sorted(by_id)) or "(none)"
        raise ExerciseError(f"unknown exercise id(s): {', '.join(unknown)}; known: {known}")
    return [by_id[i] for i in dict.fromkeys(only)]


# --------------------------------------------------------------------------- tests per exercise


def _marker_ids(node: ast.expr) -> list:
    """Ids named by `pytest.mark.exercise("a", ...)` / `mark.exercise(...)` in an expression."""
    ids = []
    for call in ast.walk(node):
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "exercise"
                and isinstance(call.func.value, (ast.Attribute, ast.Name))
                and getattr(call.func.value, "attr", getattr(call.func.value, "id", None)) == "mark"):
            ids += [a.value for a in call.args
                    if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return ids


def tests_by_exercise(root: Path | str | None = None) -> dict:
    """{exercise id: ["tests/test_x.py::test_name", ...]} read from the test files' source.

    Reads markers statically (no import, no collection), so it is instant; it sees marks on test
    functions, on test classes (every ``test_*`` method), and module-level ``pytestmark``.
    A parametrized test counts once.
    """
    root = Path(root).resolve() if root else project_root()
    result: dict = {}
    tests = root / TESTS_DIR
    for path in sorted(tests.rglob("test_*.py")) if tests.is_dir() else []:
        rel = path.relative_to(root).as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            continue  # pytest itself will report it
        module_ids = []
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets):
                module_ids += _marker_ids(stmt.value)

        def add(ids, name):
            for ex_id in dict.fromkeys(ids):
                result.setdefault(ex_id, []).append(f"{rel}::{name}")

        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name.startswith("test"):
                add(module_ids + [i for d in stmt.decorator_list for i in _marker_ids(d)], stmt.name)
            elif isinstance(stmt, ast.ClassDef) and stmt.name.startswith("Test"):
                class_ids = [i for d in stmt.decorator_list for i in _marker_ids(d)]
                for item in stmt.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                        ids = module_ids + class_ids + [i for d in item.decorator_list
                                                        for i in _marker_ids(d)]
                        add(ids, f"{stmt.name}::{item.name}")
    return result


# --------------------------------------------------------------------------- export


def _stub_text(text: str, exercises: list) -> str:
    """The file's text with each region's code replaced by a raise; markers and hints stay."""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    # Work from the bottom up so earlier line numbers stay valid.
    for ex in sorted(exercises, key=lambda e: e.begin_line, reverse=True):
        message = ex.stub_message().replace("\\", "\\\\").replace('"', '\\"')
        stub = f'{ex.indent}raise NotImplementedError("{message}"){newline}'
        first_code = ex.begin_line + len(ex.hint_lines)  # 0-based index of first code line
        lines[first_code:ex.end_line - 1] = [stub]
    return "".join(lines)


def project_files(root: Path) -> list:
    """The files that make up the project, relative to ``root``.

    In a git checkout: the tracked files plus untracked ones that .gitignore does not exclude
    (so a new, not yet committed test is part of the copy); otherwise every file except build
    outputs and caches.
    """
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=True).stdout
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"],
                             capture_output=True, check=True, text=True).stdout.strip()
        if Path(top).resolve() == root.resolve():
            names = sorted({n for n in out.decode("utf-8").split("\0") if n})
            return [Path(n) for n in names  # skip deleted files, and caches even if not ignored
                    if (root / n).is_file() and not _SKIP_DIRS.intersection(Path(n).parts)]
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.endswith(_SKIP_SUFFIXES))
        for name in sorted(names):
            if not name.endswith(_SKIP_SUFFIXES):
                files.append((Path(folder) / name).relative_to(root))
    return files


def export(dest: Path | str, only=None, root: Path | str | None = None) -> list:
    """Write a student copy of the project at ``root`` into ``dest``; return the stubbed exercises.

    Every exercise (or only those whose ids are in ``only``) becomes
    ``raise NotImplementedError("exercise <id>: <hint>")``. ``dest`` must not exist or be empty.
    """
    root = Path(root).resolve() if root else project_root()
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise ExerciseError(f"{dest} is not empty; export writes into a new or empty folder")
    chosen = _select(find_exercises(root), only)
    by_file: dict = {}
    for ex in chosen:
        by_file.setdefault(ex.file, []).append(ex)

    dest.mkdir(parents=True, exist_ok=True)
    for rel in project_files(root):
        source, target = root / rel, dest / rel
        if dest in source.resolve().parents:
            continue  # dest may sit inside the project (a scratch folder); never copy it into itself
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in by_file:
            text = source.read_text(encoding="utf-8")
            target.write_text(_stub_text(text, by_file[rel]), encoding="utf-8")
        else:
            shutil.copy2(source, target)
    return chosen


# --------------------------------------------------------------------------- check and verify


def pytest_env(project: Path) -> dict:
    """Environment for a pytest run that must import ``project``'s minitl, not an installed one."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project), env.get("PYTHONPATH")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def check(ex_id: str, root: Path | str | None = None, pytest_args=()) -> int:
    """Run the tests of one exercise in the project at ``root``; return pytest's exit code."""
    root = Path(root).resolve() if root else project_root()
    _select(find_exercises(root), [ex_id])  # an unknown id is an error, not "no tests ran"
    files = sorted({t.split("::")[0] for t in tests_by_exercise(root).get(ex_id, [])})
    if not files:
        raise ExerciseError(f"no test carries @pytest.mark.exercise({ex_id!r}) under {root / TESTS_DIR}")
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--exercise", ex_id,
           *files, *pytest_args]
    return subprocess.run(cmd, cwd=root, env=pytest_env(root)).returncode


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


def _parse_junit(path: Path):
    failed, passed, skipped, messages = [], [], [], []
    if not path.is_file():
        return failed, passed, skipped, messages
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            failed.append(name)
            messages.append((bad.get("message") or "") + "\n" + (bad.text or ""))
        elif case.find("skipped") is not None:
            skipped.append(name)
        else:
            passed.append(name)
    return failed, passed, skipped, messages


def _inside(path: str, folder: Path) -> bool:
    return bool(path) and Path(folder).resolve() in Path(path).resolve().parents


def _stub_one(ex: Exercise, root: Path, tests: list, scratch: Path) -> StubResult:
    """Export a copy with ``ex`` alone stubbed and run the tests that carry it there."""
    result = StubResult(ex.id, tests=tests)
    if not tests:
        result.problem = f"no test carries @pytest.mark.exercise({ex.id!r})"
        return result
    copy = scratch / ex.id
    export(copy, only=[ex.id], root=root)
    junit = scratch / f"{ex.id}.xml"
    files = sorted({t.split("::")[0] for t in tests})
    # Not -q: quiet mode hides the report header, where conftest says which minitl it imports.
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--tb=short",
           "--exercise", ex.id, f"--junitxml={junit}", "-o", "junit_family=xunit2", *files]
    env = pytest_env(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the copy is thrown away; don't spend time on .pyc
    # Third-party pytest plugins (hypothesis's costs ~0.6 s a run) are not needed to run the
    # tests of an exercise; @given tests still run without hypothesis's plugin.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"  # runs go in parallel; one BLAS thread each avoids oversubscription
    proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
    result.output = proc.stdout + proc.stderr
    found = re.search(r"^minitl under test: (.*)$", proc.stdout, re.MULTILINE)
    result.imported_from = found.group(1).strip() if found else ""
    result.failed, result.passed, result.skipped, messages = _parse_junit(junit)
    result.reached_stub = any(f"exercise {ex.id}:" in m for m in messages)
    shutil.rmtree(copy, ignore_errors=True)

    if not _inside(result.imported_from, copy):
        result.problem = (f"the tests imported minitl from {result.imported_from or '?'}, "
                          f"not from the student copy")
    elif proc.returncode not in (0, 1, 5) or (proc.returncode == 1 and not result.failed):
        result.problem = f"pytest exited with {proc.returncode} (collection or usage error)"
    elif result.passed:
        result.problem = "passes on the stub: " + ", ".join(result.passed)
    elif not result.failed:
        result.problem = ("no test ran" if not result.skipped else "every test was skipped")
    elif not result.reached_stub:
        result.problem = "tests fail, but none with the stub's NotImplementedError"
    return result


def verify(root: Path | str | None = None, only=None, jobs: int = 2) -> list:
    """For each exercise alone: stub it in a fresh copy, run its tests there, expect them to fail.

    Returns one StubResult per exercise. Sound means: at least one test carries the exercise,
    every one of them that runs fails on the stub, one of the failures is the stub's own
    NotImplementedError, and pytest imported the copy's minitl.
    """
    root = Path(root).resolve() if root else project_root()
    chosen = _select(find_exercises(root), only)
    tests = tests_by_exercise(root)
    with tempfile.TemporaryDirectory(prefix="minitl-verify-") as scratch, \
            ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_stub_one, ex, root, tests.get(ex.id, []), Path(scratch))
                   for ex in chosen]
        return [f.result() for f in futures]
