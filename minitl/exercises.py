"""Exercises: find them in the library, order them by lesson, export a student copy.

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

CUDA sources (``.cu``, ``.cuh``) carry exercises the same way with ``//`` comments; there the
stub is ``MINITL_EXERCISE_STUB("exercise gpu.some_id: <hint>");``, a macro the kernels define
so that the Python wrapper raises the same NotImplementedError. The markers stay in the copy,
so ``minitl exercises list``, ``check`` and ``status`` work inside it too.

Lessons say which exercises they meet, in order: a markdown cell of ``lessons/lesson_NN_*.py``
names each one with its check command, ``minitl exercises check some.id``. ``Syllabus`` reads
those lines, so ``list`` shows the exercises in the order a student meets them and
``export --lesson N`` stubs those of lessons 1..N.

Running the tests of exercises (check, status, verify, the prerequisites found by running)
lives in ``minitl.exercise_runs``; grading a class in ``minitl.grading``.

Only real comments count as markers: the Python scanner reads tokens, so a marker quoted in a
docstring (like the ones above) is never taken for an exercise.
"""
from __future__ import annotations

import ast
import difflib
import io
import json
import os
import re
import shutil
import subprocess
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

# Folders of a project whose sources may hold exercises.
SOURCE_DIRS = ("minitl", "kernels")
# Folder of the tests that carry @pytest.mark.exercise(...).
TESTS_DIR = "tests"
# Folder of the lessons whose markdown names the exercises they meet.
LESSONS_DIR = "lessons"
# What `export` writes into a student copy: which exercises it stubbed (``status`` reads it).
MANIFEST = "student_copy.json"
# The switch that a student copy turns off, so the student's reference code is what runs.
FASTPATH_SWITCH = Path("minitl/fastpath/__init__.py")


@dataclass(frozen=True)
class Language:
    """How exercises are written in one kind of source file."""

    name: str
    comment: str      # the line-comment marker: "#" or "//"
    stub: str         # the statement that replaces a region; {message} is the stub message


PYTHON = Language("Python", "#", 'raise NotImplementedError("{message}")')
CUDA = Language("CUDA", "//", 'MINITL_EXERCISE_STUB("{message}");')
LANGUAGES = {".py": PYTHON, ".cu": CUDA, ".cuh": CUDA}

# Matched against a comment's text after its "#" or "//".
_BEGIN = re.compile(r"BEGIN EXERCISE\b\s*(?P<id>\S*)\s*(?P<rest>.*)$")
_END = re.compile(r"END EXERCISE\b\s*(?P<rest>.*)$")
_HINT = re.compile(r"^(?:#|//)\s*hint:\s?(?P<text>.*)$")
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
    begin_line: int          # the "BEGIN EXERCISE" line
    end_line: int            # the "END EXERCISE" line
    hint_lines: tuple        # the hint comment lines, verbatim (without indentation)
    indent: str              # indentation of the BEGIN line; the stub is written at it
    is_stub: bool = False    # the region holds this exercise's stub: a student copy, not started

    @property
    def language(self) -> Language:
        return LANGUAGES[self.file.suffix]

    @property
    def hint(self) -> str:
        """The hint as one sentence: the text of every ``hint:`` line, joined by spaces."""
        texts = (_HINT.match(line).group("text").strip() for line in self.hint_lines)
        return " ".join(t for t in texts if t)

    @property
    def location(self) -> str:
        return f"{self.file.as_posix()}:{self.begin_line}"

    def stub_message(self) -> str:
        return f"exercise {self.id}: {self.hint}"

    def stub_statement(self) -> str:
        """The line that replaces the region's code (without indentation or newline)."""
        message = self.stub_message().replace("\\", "\\\\").replace('"', '\\"')
        return self.language.stub.format(message=message)


# --------------------------------------------------------------------------- finding a project


def find_project(start: Path | str | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the current folder) holding
    ``minitl/__init__.py``, or None."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "minitl" / "__init__.py").is_file():
            return folder
    return None


def project_root(start: Path | str | None = None) -> Path:
    """``find_project(start)``, falling back to the project of the imported minitl package.

    Starting from the current folder (not from the installed package) matters: a student runs
    ``minitl exercises list`` inside the exported copy, not the original.
    """
    return find_project(start) or Path(__file__).resolve().parent.parent


def copy_root(root: Path | str | None = None) -> Path:
    """The project (a student copy, or the library's checkout) that ``check`` and ``status``
    work in: ``root`` if given, else the one holding the current folder. Never an installed
    minitl: running a student's tests there would test the wrong code."""
    if root is not None:
        root = Path(root).resolve()
        if not (root / "minitl" / "__init__.py").is_file():
            raise ExerciseError(f"{root} is not a minitl project: it has no minitl/__init__.py; "
                                f"pass the folder that `minitl exercises export` wrote")
        return root
    found = find_project()
    if found is None:
        here = Path.cwd().resolve()
        looked = ", ".join(str(f) for f in (here, *here.parents))
        raise ExerciseError(
            f"not inside a student copy: looked for minitl/__init__.py in {looked}. "
            f"cd into the folder that `minitl exercises export DIR` wrote, or pass "
            f"`minitl exercises --root DIR ...`")
    return found


# --------------------------------------------------------------------------- scanning sources


def _python_comments(text: str, where: str) -> list:
    """(line, column, text after '#') of every comment that stands alone on its line."""
    lines = text.splitlines()
    found = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                row, col = tok.start
                if lines[row - 1][:col].strip() == "":
                    found.append((row, col, tok.string[1:].strip()))
    except (tokenize.TokenError, SyntaxError) as err:
        raise ExerciseError(f"{where}: cannot read Python tokens: {err}") from err
    return found


def _python_region_check(text: str, where: str):
    """A function (id, begin, end) -> problem or "" for Python: the region must hold statements
    of one function body, so that replacing it by a `raise` keeps the module importable."""
    try:
        tree = ast.parse(text, filename=where)
    except SyntaxError as err:
        raise ExerciseError(f"{where}:{err.lineno}: not valid Python: {err.msg}") from err
    every = {n.lineno for n in ast.walk(tree) if isinstance(n, ast.stmt)}
    functions = [{n.lineno for n in ast.walk(fn) if isinstance(n, ast.stmt) and n is not fn}
                 for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))]

    def check(ex_id, begin, end):
        inside = {line for line in every if begin < line < end}
        if not inside:
            return f"exercise {ex_id} has no code to stub"
        if not any(inside <= body for body in functions):
            return (f"exercise {ex_id} is not inside a function body; markers must wrap "
                    f"statements of one function so the stubbed module still imports")
        return ""
    return check


def _cuda_comments(text: str) -> list:
    """(line, column, text after '//') of every '//' comment that stands alone on its line."""
    found = []
    for row, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith("//"):
            found.append((row, len(line) - len(stripped), stripped[2:].strip()))
    return found


def _brace_depths(lines: list) -> tuple:
    """(depth of {} nesting at the start of each line, lowest depth reached on each line),
    ignoring braces in comments and in string and character literals."""
    starts, lows, depth, in_block = [], [], 0, False
    for line in lines:
        starts.append(depth)
        low, i, quote = depth, 0, None
        while i < len(line):
            pair = line[i:i + 2]
            if in_block:
                if pair == "*/":
                    in_block, i = False, i + 1
            elif quote:
                if line[i] == "\\":
                    i += 1
                elif line[i] == quote:
                    quote = None
            elif pair == "//":
                break
            elif pair == "/*":
                in_block, i = True, i + 1
            elif line[i] in "\"'":
                quote = line[i]
            elif line[i] == "{":
                depth += 1
            elif line[i] == "}":
                depth -= 1
                low = min(low, depth)
            i += 1
        lows.append(low)
    return starts, lows


def _cuda_region_check(text: str, where: str):
    """The CUDA counterpart of _python_region_check: the region sits inside braces (a function
    body) and opens and closes its own, so that the stub statement keeps the source compiling."""
    lines = text.splitlines()
    starts, lows = _brace_depths(lines)

    def check(ex_id, begin, end):
        code = [line for line in lines[begin:end - 1]
                if line.strip() and not line.strip().startswith("//")]
        if not code:
            return f"exercise {ex_id} has no code to stub"
        depth = starts[begin - 1]
        if depth == 0:
            return (f"exercise {ex_id} is not inside a function body; markers must sit inside "
                    f"the braces of one function so the stubbed source still compiles")
        if starts[end - 1] != depth or min(lows[begin - 1:end - 1]) < depth:
            return (f"the braces between the markers of exercise {ex_id} do not balance; a "
                    f"region must hold whole statements")
        return ""
    return check


def scan_file(path: Path, root: Path) -> list:
    """The exercises of one source file, in order; raises ExerciseError naming file:line on bad
    markers. The file's suffix says its language (LANGUAGES)."""
    rel = path.relative_to(root)
    where = rel.as_posix()
    language = LANGUAGES[path.suffix]
    text = path.read_text(encoding="utf-8")
    if "EXERCISE" not in text:  # cheap pre-filter: most files have none
        return []
    if language is PYTHON:
        # parse first: a syntax error is reported with its line, as Python's parser sees it
        region_problem = _python_region_check(text, where)
        comments = _python_comments(text, where)
    else:
        comments, region_problem = _cuda_comments(text), _cuda_region_check(text, where)
    lines = text.splitlines()

    exercises, open_begin = [], None  # open_begin: (line, col, id) of an unclosed BEGIN
    for row, col, comment in comments:
        begin, end = _BEGIN.match(comment), _END.match(comment)
        if begin:
            ex_id = begin.group("id")
            if open_begin:
                raise ExerciseError(
                    f"{where}:{row}: BEGIN EXERCISE {ex_id} inside exercise {open_begin[2]} "
                    f"(opened at line {open_begin[0]}); exercises cannot nest")
            if not _VALID_ID.match(ex_id) or begin.group("rest"):
                raise ExerciseError(
                    f"{where}:{row}: expected '{language.comment} BEGIN EXERCISE <id>' with a "
                    f"dotted id such as autograd.matmul_backward, got {lines[row - 1].strip()!r}")
            open_begin = (row, col, ex_id)
        elif end:
            if not open_begin:
                raise ExerciseError(f"{where}:{row}: END EXERCISE without a BEGIN EXERCISE")
            exercises.append(_make_exercise(rel, lines, region_problem, open_begin, row, col))
            open_begin = None
    if open_begin:
        raise ExerciseError(
            f"{where}:{open_begin[0]}: exercise {open_begin[2]} is never closed "
            f"(no '{language.comment} END EXERCISE' after it)")
    return exercises


def _make_exercise(rel, lines, region_problem, begin, end_row, end_col) -> Exercise:
    """Check one BEGIN..END region and turn it into an Exercise."""
    begin_row, begin_col, ex_id = begin
    where = rel.as_posix()
    language = LANGUAGES[rel.suffix]
    indent = lines[begin_row - 1][:begin_col]
    if end_col != begin_col:
        raise ExerciseError(
            f"{where}:{end_row}: END EXERCISE of {ex_id} must be indented like its BEGIN "
            f"(line {begin_row})")
    problem = region_problem(ex_id, begin_row, end_row)
    if problem:
        raise ExerciseError(f"{where}:{begin_row}: {problem}")
    hint_lines = []
    for row in range(begin_row + 1, end_row):
        stripped = lines[row - 1].strip()
        if not _HINT.match(stripped) or not stripped.startswith(language.comment):
            break
        hint_lines.append(stripped)
    if not hint_lines:
        raise ExerciseError(
            f"{where}:{begin_row}: exercise {ex_id} has no '{language.comment} hint: ...' line "
            f"right after its BEGIN marker; students see the hint in the stub's error message")
    # Code less indented than the markers would leave the block after the stub out of place.
    for offset, line in enumerate(lines[begin_row:end_row - 1], start=begin_row + 1):
        if line.strip() and not line.startswith(indent):
            raise ExerciseError(
                f"{where}:{offset}: line of exercise {ex_id} is indented less than its "
                f"BEGIN marker (line {begin_row})")
    exercise = Exercise(ex_id, rel, begin_row, end_row, tuple(hint_lines), indent)
    # A region is "not started" while it still holds its own stub statement (it would raise).
    stub_start = exercise.stub_statement().split('"', 1)[0] + f'"exercise {ex_id}:'
    code = lines[begin_row + len(hint_lines):end_row - 1]
    is_stub = any(line.strip().startswith(stub_start) for line in code)
    return Exercise(ex_id, rel, begin_row, end_row, tuple(hint_lines), indent, is_stub)


def source_files(root: Path) -> list:
    """The files under SOURCE_DIRS that may hold exercises (LANGUAGES' suffixes), sorted."""
    found = []
    for folder in SOURCE_DIRS:
        base = root / folder
        if base.is_dir():
            found += sorted(path for path in base.rglob("*")
                            if path.suffix in LANGUAGES and path.is_file()
                            and not _SKIP_DIRS.intersection(path.relative_to(root).parts))
    return found


def find_exercises(root: Path | str | None = None) -> list:
    """Every exercise of the project at ``root``, sorted by file and line.

    Raises ExerciseError for duplicate ids, unclosed, unopened or nested markers, markers
    outside a function body, and exercises without a hint or without code.
    """
    root = Path(root).resolve() if root else project_root()
    found, seen = [], {}
    for path in source_files(root):
        for ex in scan_file(path, root):
            if ex.id in seen:
                raise ExerciseError(
                    f"{ex.location}: duplicate exercise id {ex.id} (first at {seen[ex.id].location})")
            seen[ex.id] = ex
            found.append(ex)
    return found


def unknown_id_message(unknown: list, known: list) -> str:
    """"unknown exercise id 'x'; did you mean ...?", with the closest known ids."""
    parts = []
    for ex_id in unknown:
        last = ex_id.rsplit(".", 1)[-1]
        close = [k for k in known if k.rsplit(".", 1)[-1] == last]  # the right name, no prefix
        scores = {k: difflib.SequenceMatcher(None, ex_id, k).ratio() for k in known}
        best = max(scores.values(), default=0)
        close += [k for k in sorted(known, key=scores.get, reverse=True)[:3]
                  if scores[k] >= max(0.6, best - 0.05) and k not in close]
        parts.append(f"unknown exercise id {ex_id!r}"
                     + (f"; did you mean {' or '.join(close[:3])}?" if close else ""))
    listing = (f"the exercises are: {', '.join(known)}" if len(known) <= 12 else
               f"`minitl exercises list` shows all {len(known)}") if known else "this project has none"
    return "; ".join(parts) + f" ({listing})"


def select(exercises: list, only=None) -> list:
    """The exercises whose ids are in ``only`` (all of them when None), in ``only``'s order."""
    if only is None:
        return list(exercises)
    by_id = {ex.id: ex for ex in exercises}
    unknown = [i for i in only if i not in by_id]
    if unknown:
        raise ExerciseError(unknown_id_message(unknown, sorted(by_id)))
    return [by_id[i] for i in dict.fromkeys(only)]


# --------------------------------------------------------------------------- lessons


_LESSON_FILE = re.compile(r"^lesson_(?P<number>\d+)_[A-Za-z0-9_]+\.py$")
_CHECK_COMMAND = re.compile(r"minitl exercises check\s+(?P<id>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")


@dataclass(frozen=True)
class Mention:
    """A lesson naming an exercise's check command in one of its markdown cells."""

    id: str
    lesson: int
    where: str     # lessons/lesson_01_autograd.py:223


@dataclass
class Syllabus:
    """Which lesson meets which exercise, in what order, read from the lessons themselves.

    A lesson lists its exercises in a markdown cell, one line each with its check command
    (``- `autograd.topological_sort`: `minitl exercises check autograd.topological_sort```);
    the order of those lines is the order the lesson meets them.
    """

    mentions: list = field(default_factory=list)

    @classmethod
    def read(cls, root: Path | str | None = None) -> "Syllabus":
        root = Path(root).resolve() if root else project_root()
        mentions = []
        folder = root / LESSONS_DIR
        paths = sorted(folder.glob("lesson_*.py")) if folder.is_dir() else []
        for path in paths:
            match = _LESSON_FILE.match(path.name)
            if not match:
                continue
            in_markdown = False
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.startswith("# %%"):
                    in_markdown = bool(re.search(r"\[(markdown|md)\]", line))
                elif in_markdown and line.startswith("#"):
                    for found in _CHECK_COMMAND.finditer(line):
                        mentions.append(Mention(found.group("id"), int(match.group("number")),
                                                f"{path.relative_to(root).as_posix()}:{number}"))
        mentions.sort(key=lambda m: m.lesson)  # stable: a lesson keeps its own order
        return cls(mentions)

    def places(self) -> dict:
        """{id: (lesson, place in the lesson)}, from each exercise's first mention."""
        places, counts = {}, {}
        for mention in self.mentions:
            counts[mention.lesson] = counts.get(mention.lesson, -1) + 1
            places.setdefault(mention.id, (mention.lesson, counts[mention.lesson]))
        return places

    def lesson_of(self, ex_id: str):
        place = self.places().get(ex_id)
        return place[0] if place else None

    def sort(self, exercises: list) -> list:
        """``exercises`` in the order the lessons meet them; those no lesson names come last."""
        places = self.places()
        return sorted(exercises, key=lambda e: (*places.get(e.id, (float("inf"), 0)),
                                                e.file.as_posix(), e.begin_line))

    def up_to(self, lesson: int, exercises: list) -> list:
        """The exercises of lessons 1..``lesson``, in lesson order."""
        places = self.places()
        return [e for e in self.sort(exercises) if places.get(e.id, (float("inf"),))[0] <= lesson]

    def problems(self, exercises: list) -> list:
        """What keeps this syllabus from placing every exercise exactly once."""
        known, problems, first = {e.id for e in exercises}, [], {}
        for mention in self.mentions:
            if mention.id not in known:
                problems.append(f"{mention.where}: `minitl exercises check {mention.id}` names no "
                                f"exercise; {unknown_id_message([mention.id], sorted(known))}")
            elif mention.id in first:
                problems.append(f"{mention.where}: exercise {mention.id} is already listed at "
                                f"{first[mention.id].where}; each exercise belongs to one lesson")
            else:
                first[mention.id] = mention
        for ex in exercises:
            if ex.id not in first:
                problems.append(
                    f"exercise {ex.id} ({ex.location}) is in no lesson: add the line "
                    f"\"- `{ex.id}`: `minitl exercises check {ex.id}`\" to the exercises cell of "
                    f"the lesson that meets it")
        return problems


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
        except (SyntaxError, UnicodeDecodeError):
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


def stub_text(text: str, exercises: list) -> str:
    """The file's text with each region's code replaced by its stub; markers and hints stay."""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    # Work from the bottom up so earlier line numbers stay valid.
    for ex in sorted(exercises, key=lambda e: e.begin_line, reverse=True):
        first_code = ex.begin_line + len(ex.hint_lines)  # 0-based index of first code line
        lines[first_code:ex.end_line - 1] = [f"{ex.indent}{ex.stub_statement()}{newline}"]
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


def fast_paths_off(text: str) -> str:
    """The fast-path switch module with ``ENABLED_BY_DEFAULT = False``."""
    line = re.compile(r"^ENABLED_BY_DEFAULT\s*=\s*(True|False)\b", re.MULTILINE)
    if not line.search(text):
        raise ExerciseError(
            f"{FASTPATH_SWITCH.as_posix()} has no 'ENABLED_BY_DEFAULT = True' line to turn off; "
            f"a student copy must run the student's reference code, not the fast paths")
    return line.sub("ENABLED_BY_DEFAULT = False", text)


def choose(exercises: list, only=None, lesson=None, syllabus: Syllabus | None = None) -> list:
    """The exercises an export stubs: ``only`` these ids, or those of lessons 1..``lesson``,
    or all; in lesson order."""
    if only is not None and lesson is not None:
        raise ExerciseError("give --only or --lesson, not both")
    if lesson is not None:
        chosen = syllabus.up_to(int(lesson), exercises)
        if not chosen:
            raise ExerciseError(f"no exercise belongs to lessons 1..{lesson}; the lessons name "
                                f"{len(syllabus.mentions)} exercises in all")
        return chosen
    return syllabus.sort(select(exercises, only))


def export(dest: Path | str, only=None, root: Path | str | None = None, lesson=None) -> list:
    """Write a student copy of the project at ``root`` into ``dest``; return the stubbed exercises.

    Every exercise (or only those whose ids are in ``only``, or those of lessons 1..``lesson``)
    becomes its stub. The copy's fast paths are off (``ENABLED_BY_DEFAULT = False``), so the
    code the student writes is the code that runs, and ``student_copy.json`` records which
    exercises it holds. ``dest`` must not exist or be empty.
    """
    root = Path(root).resolve() if root else project_root()
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise ExerciseError(f"{dest} is not empty; export writes into a new or empty folder")
    syllabus = Syllabus.read(root)
    chosen = choose(find_exercises(root), only, lesson, syllabus)
    by_file: dict = {}
    for ex in chosen:
        by_file.setdefault(ex.file, []).append(ex)

    dest.mkdir(parents=True, exist_ok=True)
    for rel in project_files(root):
        source, target = root / rel, dest / rel
        if dest in source.resolve().parents or rel == Path(MANIFEST):
            continue  # dest may sit inside the project (a scratch folder); never copy it into itself
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in by_file or rel == FASTPATH_SWITCH:
            text = source.read_text(encoding="utf-8")
            if rel in by_file:
                text = stub_text(text, by_file[rel])
            if rel == FASTPATH_SWITCH:
                text = fast_paths_off(text)
            with open(target, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        else:
            shutil.copy2(source, target)
    manifest = {
        "about": "A student copy written by `minitl exercises export`. `minitl exercises status` "
                 "reports on the exercises below; the teacher's grader does not read this file.",
        "lesson": lesson,
        "exercises": [ex.id for ex in chosen],
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return chosen


def handed_out(root: Path) -> list | None:
    """The ids a student copy's manifest says were stubbed, or None without a manifest."""
    try:
        return list(json.loads((root / MANIFEST).read_text(encoding="utf-8"))["exercises"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
