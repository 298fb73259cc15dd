"""The lesson runner: ``minitl lesson N`` and ``minitl tour``.

A lesson is a jupytext "percent" script, ``lessons/lesson_NN_<slug>.py``: cells start at
``# %%`` (code) or ``# %% [markdown]`` (text, every line a ``#`` comment). The same file runs
as plain Python, opens as a notebook, and reads well in a diff. The runner executes the cells in
order in one namespace, like a notebook, showing the value of a cell's last expression.

* ``--step`` pauses after each cell: it shows the text, the code, and what the code printed,
  then waits for Enter (``q`` quits).
* ``--fast`` sets ``MINITL_FAST=1``; lessons ask ``minitl.report.fast_mode()`` and use small data.
* an error names the cell and the line of the lesson file, so the student knows where to look.

``run_tour`` runs every lesson in its own Python process (one lesson's variables, seeds and
figures cannot leak into the next) and writes one report of what they recorded with
``minitl.report``. New lessons join the tour by being a file in ``lessons/``.

**The rule for figures in prose.** A lesson's text never quotes a figure its own run did not
print. A *figure* is a decimal number (0.902), a percentage (88%, 1.5 %) or a time (37 s,
2 minutes, 0.4 ms) in a markdown cell, outside `inline code`, code blocks (fenced, or indented
four spaces) and $math$: those hold equations and settings, not results. Every figure in the
prose must also appear, as the same number (a percentage with its %, a time with its unit),
in what the lesson's code cells printed in that run. So a measured number is printed by a code
cell, in a sentence if need be (``report.note(f"test accuracy {acc:.3f}, still rising")``),
and the prose around it speaks of "the accuracy printed above"; a fixed number the text needs
(a spec-sheet peak, a constant of a formula) is printed by the code that uses it.
:func:`unproduced_figures` finds the figures that break the rule; ``tests/test_lessons.py``
applies it to every lesson's ``--fast`` run, and ``minitl tour`` to each lesson it runs, so a
lesson whose text and numbers drift apart fails.

**The end of a lesson.** Its last cell is a markdown cell headed ``## Check yourself``: two or
three numbered questions whose answers the lesson's own output contains, then the lesson's
exercises, one line each, ``- `some.id`: `minitl exercises check some.id```
(``minitl.exercises.Syllabus`` reads those lines). :func:`check_yourself_problems` says what a
lesson's ending lacks.
"""
from __future__ import annotations

import ast
import builtins
import importlib.resources
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from minitl import report

LESSON_FILE = re.compile(r"^lesson_(?P<number>\d{2})_(?P<slug>[a-z0-9_]+)\.py$")
_CELL_MARKER = re.compile(r"^# %%(?P<rest>.*)$")


class LessonError(Exception):
    """A lesson that cannot be found, parsed, or that raised in one of its cells."""

    def __init__(self, message, cell=None, line=None):
        super().__init__(message)
        self.cell, self.line = cell, line


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    index: int     # 1-based position in the lesson
    kind: str      # "code" or "markdown"
    source: str    # code as written; markdown without its leading "# "
    line: int      # line of the lesson file where the cell's body starts

    def numbered_lines(self):
        """(line number in the lesson file, text) of the cell's non-trailing lines."""
        lines = self.source.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        return list(enumerate(lines, start=self.line))


def _uncomment(line: str) -> str:
    if line.startswith("# "):
        return line[2:]
    return line[1:] if line.startswith("#") else line


def parse_cells(text: str) -> list:
    """Split a percent-format script into cells (see the module docstring).

    Lines before the first marker form a code cell if they hold any code (imports, a module
    docstring); a jupytext YAML header (comment lines between ``# ---``) is skipped.
    """
    chunks, kind, start, body = [], "code", 1, []
    for number, line in enumerate(text.splitlines(), start=1):
        marker = _CELL_MARKER.match(line)
        if marker:
            chunks.append((kind, start, body))
            rest = marker.group("rest")
            kind = "markdown" if re.search(r"\[(markdown|md)\]", rest) else "code"
            start, body = number + 1, []
        else:
            body.append(line)
    chunks.append((kind, start, body))

    cells = []
    for position, (kind, start, body) in enumerate(chunks):
        if kind == "markdown":
            source = "\n".join(_uncomment(line) for line in body).strip("\n")
        else:
            source = "\n".join(body)
        if position == 0 and not any(l.strip() and not l.lstrip().startswith("#") for l in body):
            continue  # nothing but comments (or a jupytext header) before the first cell
        if source.strip():
            cells.append(Cell(len(cells) + 1, kind, source, start))
    return cells


# --------------------------------------------------------------------------- finding lessons


@dataclass(frozen=True)
class Lesson:
    number: int
    slug: str
    path: Path

    @property
    def cells(self) -> list:
        return parse_cells(self.path.read_text(encoding="utf-8"))

    @property
    def title(self) -> str:
        """The first Markdown heading of the lesson, else its slug."""
        for cell in self.cells:
            if cell.kind == "markdown":
                for line in cell.source.splitlines():
                    if line.startswith("#"):
                        return line.lstrip("#").strip()
        return f"Lesson {self.number}: {self.slug.replace('_', ' ')}"

    @classmethod
    def from_path(cls, path) -> "Lesson":
        path = Path(path).resolve()
        match = LESSON_FILE.match(path.name)
        if not match:
            raise LessonError(f"{path.name}: a lesson file is named lesson_NN_<slug>.py")
        return cls(int(match.group("number")), match.group("slug"), path)


def lesson_dirs() -> list:
    """Where lessons are looked for, first match wins.

    ``$MINITL_LESSONS`` (folders separated by os.pathsep) if set; else the ``lessons/`` folder
    beside the minitl package (a checkout, or site-packages after ``pip install``), then the
    installed ``minitl.lessons`` package.
    """
    if os.environ.get("MINITL_LESSONS"):
        return [Path(p) for p in os.environ["MINITL_LESSONS"].split(os.pathsep) if p]
    dirs = [Path(__file__).resolve().parent.parent / "lessons"]
    try:
        dirs.append(Path(str(importlib.resources.files("minitl.lessons"))))
    except (ModuleNotFoundError, TypeError):
        pass
    return dirs


def find_lessons(dirs=None) -> list:
    """Every lesson, sorted by number."""
    found = {}
    folders = dirs if dirs is not None else lesson_dirs()
    # a checkout installed in editable mode names the same folder twice: look once
    folders = list(dict.fromkeys(Path(f).resolve() for f in folders))
    for folder in folders:
        for path in sorted(Path(folder).glob("lesson_*.py")) if Path(folder).is_dir() else []:
            if not LESSON_FILE.match(path.name):
                continue
            lesson = Lesson.from_path(path)
            other = found.get(lesson.number)
            if other and other.path.parent == lesson.path.parent:
                raise LessonError(f"two lessons numbered {lesson.number}: {other.path.name}, {path.name}")
            found.setdefault(lesson.number, lesson)
    return [found[n] for n in sorted(found)]


def get_lesson(key, dirs=None) -> Lesson:
    """A lesson by number (1 or "01"), by slug ("autograd"), or by the path of its file."""
    key = str(key)
    if key.endswith(".py") and Path(key).is_file():
        return Lesson.from_path(key)
    lessons = find_lessons(dirs)
    for lesson in lessons:
        if (key.isdigit() and int(key) == lesson.number) or key == lesson.slug:
            return lesson
    listing = ", ".join(f"{l.number} ({l.slug})" for l in lessons) or "none found"
    raise LessonError(f"no lesson {key!r}; lessons: {listing}")


# --------------------------------------------------------------------------- showing cells


def _style(text: str, code: str) -> str:
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m{text}\033[0m"
    return text


def render_markdown(source: str, styled: bool = True) -> str:
    """Markdown for a terminal: headings bold and underlined, the rest as written."""
    out = []
    for line in source.splitlines():
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            text = heading.group(2)
            out += ["", _style(text, "1") if styled else text,
                    ("=" if len(heading.group(1)) == 1 else "-") * len(text)]
        else:
            out.append(line)
    return "\n".join(out).strip("\n")


def render_code(cell: Cell) -> str:
    """The code with the lesson file's line numbers in a gutter."""
    return "\n".join(_style(f"{n:4d} | ", "2") + text for n, text in cell.numbered_lines())


# --------------------------------------------------------------------------- figures in prose

_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
_TIME_UNITS = {"ms": "ms", "millisecond": "ms", "milliseconds": "ms",
               "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
               "min": "min", "mins": "min", "minute": "min", "minutes": "min",
               "h": "h", "hour": "h", "hours": "h"}
# a number not glued to a word or another number (word2vec, v1.2.3 and 3x3 hold no figure)
_FIGURE = re.compile(r"(?<![\w.])(?P<number>%s)(?:(?P<percent>\s?%%)|\s?(?P<unit>%s)\b)?(?![\w]|\.\d)"
                     % (_NUMBER, "|".join(sorted(_TIME_UNITS, key=len, reverse=True))))
# where a number is an equation's or a setting's, not a result
_NOT_PROSE = re.compile(r"```.*?```|\$\$.*?\$\$|\$[^$\n]+\$|`[^`\n]*`|^(?: {4}|\t)[^\n]*$",
                        re.S | re.M)


@dataclass(frozen=True)
class Figure:
    """A figure quoted in a lesson: its number, and "%" or a time unit ("s", "min", ...) or ""."""

    number: str
    unit: str
    text: str      # as written

    def key(self):
        """(value, unit): 0.902 and 0.9020 are the same figure."""
        return (float(self.number.replace(",", "")), self.unit)


def find_figures(text: str) -> list:
    """The figures (decimals, percentages, times) of ``text``; integers alone are not figures."""
    found = []
    for match in _FIGURE.finditer(text):
        unit = "%" if match.group("percent") else _TIME_UNITS.get(match.group("unit") or "", "")
        if unit or "." in match.group("number"):
            found.append(Figure(match.group("number"), unit, match.group(0)))
    return found


def prose_figures(lesson: Lesson) -> list:
    """(line of the lesson file, Figure) for every figure in the lesson's markdown prose."""
    found = []
    for cell in lesson.cells:
        if cell.kind != "markdown":
            continue
        prose = _NOT_PROSE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), cell.source)
        for offset, line in enumerate(prose.splitlines()):
            found += [(cell.line + offset, figure) for figure in find_figures(line)]
    return found


def code_output(lesson: Lesson, output: str) -> str:
    """What the lesson's code printed: ``output`` (a run's stdout) less the echoed markdown."""
    for cell in lesson.cells:
        if cell.kind == "markdown":
            output = output.replace(render_markdown(cell.source, styled=False), "")
    return output


def unproduced_figures(lesson: Lesson, output: str) -> list:
    """The figures the lesson's prose quotes that its run did not print, as "file:line: figure".

    ``output`` is the run's stdout (``minitl lesson N`` or a tour's log). A decimal counts as
    printed when the same number (0.902 or 0.9020) was printed with any unit; a percentage or a
    time needs the same unit ("88%" is not printed by "0.88"; "37 seconds" is by "37 s"). See
    the module docstring for the rule.
    """
    printed = {figure.key() for figure in find_figures(code_output(lesson, output))}
    bare = {number for number, _ in printed}
    missing = []
    for line, figure in prose_figures(lesson):
        number, unit = figure.key()
        if (number, unit) in printed or (not unit and number in bare):
            continue
        missing.append(f"{lesson.path.name}:{line}: {figure.text.strip()}")
    return missing


_CHECK_LINE = re.compile(r"^- `(?P<id>[\w.]+)`: `minitl exercises check (?P=id)`\s*$", re.M)


def check_yourself_problems(lesson: Lesson) -> list:
    """What the lesson's ending lacks (see the module docstring); empty when it is right."""
    cells = lesson.cells
    last = cells[-1] if cells else None
    name = lesson.path.name
    if last is None or last.kind != "markdown" or not last.source.lstrip().startswith("## Check yourself"):
        return [f"{name}: the last cell is not a markdown cell headed '## Check yourself'"]
    problems = []
    # a numbered item runs to the next item or the next blank line
    items = re.findall(r"^\d+\.\s+(.*?)(?=^\d+\.\s|^\s*$|\Z)", last.source, re.M | re.S)
    if not 2 <= len(items) <= 3:
        problems.append(f"{name}: 'Check yourself' asks {len(items)} numbered questions, not 2 or 3")
    problems += [f"{name}: 'Check yourself' item {k} is not a question: {item.strip()[:60]!r}"
                 for k, item in enumerate(items, start=1) if "?" not in item]
    if not _CHECK_LINE.search(last.source):
        problems.append(f"{name}: 'Check yourself' lists no exercise as "
                        "- `id`: `minitl exercises check id`")
    return problems


# --------------------------------------------------------------------------- running


def _lesson_traceback(err: BaseException, filename: str):
    """(line in the lesson file, traceback text starting at the lesson's frame)."""
    tb, start, line = err.__traceback__, None, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            start = start or tb
            line = tb.tb_lineno  # the deepest frame in the lesson file
        tb = tb.tb_next
    if isinstance(err, SyntaxError) and err.filename == filename:
        line = err.lineno
    text = "".join(traceback.format_exception(type(err), err, start or err.__traceback__))
    return line, text


def run_cell(cell: Cell, namespace: dict, filename: str) -> None:
    """Execute one code cell; if it ends in an expression, print its value like a notebook."""
    # Padding with newlines makes line numbers in tracebacks those of the lesson file.
    tree = ast.parse("\n" * (cell.line - 1) + cell.source, filename=filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        value = tree.body[-1].value
        if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
            last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        result = eval(compile(last, filename, "eval"), namespace)
        if result is not None:
            print(repr(result))


def run_lesson(lesson: Lesson, step=False, fast=False, ask=input, out=None) -> int:
    """Run a lesson's cells in order in one namespace; return how many cells ran.

    ``ask`` reads the step-mode answer (``input`` by default): Enter goes on, ``q`` quits.
    Raises LessonError naming the cell and lesson line where a cell failed.
    """
    out = out or sys.stdout
    filename = str(lesson.path)
    cells = lesson.cells
    namespace = {"__name__": "__main__", "__file__": filename, "__builtins__": builtins}
    saved = {k: os.environ.get(k) for k in ("MINITL_FAST", "MINITL_LESSON", "MPLBACKEND")}
    os.environ["MINITL_LESSON"] = lesson.slug
    previous_slug = report.set_current_lesson(None)  # forget a lesson run before in this process
    if fast:
        os.environ["MINITL_FAST"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures are saved to files, never shown
    # Lessons import helpers that sit beside them, as `python lessons/lesson_01_x.py` would.
    sys.path.insert(0, str(lesson.path.parent))
    ran = 0
    try:
        print(_style(f"{lesson.title}  ({lesson.path.name}, {len(cells)} cells"
                     f"{', fast mode' if fast else ''})", "1"), file=out, flush=True)
        for position, cell in enumerate(cells):
            if step:
                print(_style(f"\n--- cell {cell.index}/{len(cells)} ({cell.kind}, line {cell.line})",
                             "2"), file=out, flush=True)
            if cell.kind == "markdown":
                print("\n" + render_markdown(cell.source) + "\n", file=out, flush=True)
            else:
                if step:
                    print(render_code(cell) + "\n" + _style("--- output:", "2"), file=out, flush=True)
                try:
                    run_cell(cell, namespace, filename)
                except Exception as err:
                    line, text = _lesson_traceback(err, filename)
                    where = f"{lesson.path.name}, line {line}" if line else lesson.path.name
                    raise LessonError(f"lesson {lesson.number} failed in cell {cell.index} "
                                      f"({where}):\n{text}", cell=cell.index, line=line) from err
            ran += 1
            # One step shows a text cell together with the code cell that follows it.
            followed_by_code = position + 1 < len(cells) and cells[position + 1].kind == "code"
            last = position + 1 == len(cells)
            if step and not last and not (cell.kind == "markdown" and followed_by_code):
                try:
                    answer = ask(_style(f"[{cell.index}/{len(cells)}] Enter: next, q: quit > ", "2"))
                except EOFError:  # stdin closed: go on without pausing
                    answer = ""
                if answer.strip().lower() in ("q", "quit", "exit"):
                    print(f"Stopped after cell {cell.index} of {len(cells)}.", file=out)
                    return ran
        print(_style(f"\nEnd of {lesson.title}.", "1"), file=out, flush=True)
        return ran
    finally:
        sys.path.remove(str(lesson.path.parent))
        report.set_current_lesson(previous_slug)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_notebook(lesson: Lesson, path=None) -> Path:
    """Write the lesson as an .ipynb (not executed) with jupytext; return its path."""
    import jupytext  # lazy: only this command needs it

    target = Path(path) if path else Path(lesson.path.stem + ".ipynb")
    notebook = jupytext.read(lesson.path, fmt="py:percent")
    target.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(notebook, target, fmt="ipynb")
    return target


# --------------------------------------------------------------------------- the tour


def _children_cpu_seconds():
    """User + system CPU seconds of this process's finished children (None where unknown).

    A lesson's budget is CPU time: on a shared machine its wall time says more about the
    neighbours than about the lesson."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tour(out=None, fast=False, html=False, dirs=None) -> int:
    """Run every lesson in a fresh process, then write report.md (and report.html); 0 if all pass."""
    from tqdm import tqdm

    lessons = find_lessons(dirs)
    out = Path(out or Path("minitl_output") / "tour").resolve()
    (out / "records").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    package_parent = str(Path(__file__).resolve().parent.parent)
    runs = []
    for lesson in tqdm(lessons, desc="tour", unit="lesson"):
        records = out / "records" / f"lesson_{lesson.number:02d}.jsonl"
        log = out / "logs" / f"lesson_{lesson.number:02d}.log"
        records.unlink(missing_ok=True)
        env = dict(os.environ, MINITL_REPORT=str(records), MINITL_OUTPUT=str(out),
                   MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        # The child must import this very minitl (a checkout need not be installed).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "minitl.cli", "lesson", str(lesson.path)]
        if fast:
            cmd.append("--fast")
        started, cpu_before = time.perf_counter(), _children_cpu_seconds()
        with open(log, "w", encoding="utf-8") as log_file:
            code = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log_file,
                                  stderr=subprocess.STDOUT, env=env).returncode
        cpu = _children_cpu_seconds()
        run = report.LessonRun(lesson.number, lesson.slug, lesson.title, code,
                               time.perf_counter() - started, log, report.read_records(records),
                               cpu_seconds=None if cpu is None else cpu - cpu_before)
        if code == 0:
            run.unprinted_figures = unproduced_figures(
                lesson, log.read_text(encoding="utf-8", errors="replace"))
        runs.append(run)
        tqdm.write(f"lesson {lesson.number:02d} {lesson.slug}: {report.outcome(run)} "
                   f"in {run.duration:.1f} s{report.cpu_text(run)}"
                   + "".join("\n  " + f for f in run.unprinted_figures))
    written = report.write_tour_report(out, runs, fast=fast, html=html)
    for path in written:
        print(f"report: {path}")
    failed = [r for r in runs if not r.ok]
    if failed:
        print("failed lessons: " + ", ".join(f"{r.number} ({r.slug})" for r in failed))
    return 1 if failed or not runs else 0
