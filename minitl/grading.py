"""Grading a class: ``minitl exercises grade SUBMISSIONS/ [--json PATH] [--csv PATH]``.

``SUBMISSIONS/`` holds one folder per student, each a student copy (made by ``minitl exercises
export``) as handed in. For every student and exercise the grader reports pass or fail with
the reason in one line, then a class summary: the pass rate per exercise and per student.

How it grades one student:

1. It never writes into the submission. It builds a temporary project from the *teacher's*
   project (the one running ``grade``, or ``--tests PATH``): its tests/, conftest and every
   other file, with only the submission's source folders (minitl/, kernels/) in place of the
   teacher's. Tests in the submission are never run: editing or deleting one gains nothing.
2. A source file that cannot be used (deleted, not UTF-8, a syntax error) is replaced by the
   teacher's version with the graded exercises in it stubbed: those exercises fail, with the
   reason and the file and line; the rest of the submission still imports and is graded.
3. If ``import minitl`` fails (an import error, or it hangs), every exercise fails with that
   reason and nothing else runs.
4. Each exercise then runs in its own process (pytest on the teacher's tests of that
   exercise), with a time limit and an address-space limit (``--timeout``, ``--memory-mb``),
   with the fast paths off (``MINITL_FASTPATH=0``) so the student's reference code is what runs.

Grading runs the students' code with the rights of whoever runs the grader: see
docs/TEACHING.md for what it trusts and how to grade inside a container.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from minitl import exercise_runs as runs
from minitl import exercises as ex
from minitl.exercises import ExerciseError

DEFAULT_TIMEOUT = 120.0     # seconds per exercise
DEFAULT_MEMORY_MB = 2048    # address space per exercise; the whole suite peaks under 1 GiB


@dataclass
class Grade:
    """One student's result on one exercise."""

    exercise: str
    lesson: int | None
    passed: bool
    state: str          # passing, failing, blocked, not started, timed out, error, skipped
    reason: str = ""    # one line: why it failed (or how many tests passed)
    seconds: float = 0.0


@dataclass
class StudentReport:
    name: str
    folder: str
    grades: list = field(default_factory=list)
    notes: list = field(default_factory=list)   # what the teacher should know; no effect on grades

    @property
    def passed(self) -> int:
        return sum(g.passed for g in self.grades)


@dataclass
class Teacher:
    """What every student is graded against: the teacher's project and the chosen exercises."""

    root: Path
    exercises: list           # the graded exercises, in lesson order
    all_ids: set
    tests: dict               # exercise id -> test keys
    lessons: dict             # exercise id -> lesson number (or None)
    files: list               # the teacher's project files (relative)

    @classmethod
    def load(cls, root=None, only=None, lesson=None) -> "Teacher":
        root = Path(root).resolve() if root else ex.project_root()
        if not (root / ex.TESTS_DIR).is_dir():
            raise ExerciseError(f"{root} has no {ex.TESTS_DIR}/ folder; grade from the teacher's "
                                f"checkout of minitl, or pass --tests PATH to it")
        found = ex.find_exercises(root)
        syllabus = ex.Syllabus.read(root)
        chosen = ex.choose(found, only, lesson, syllabus)
        tests = ex.tests_by_exercise(root)
        untested = [e.id for e in chosen if not tests.get(e.id)]
        if untested:
            raise ExerciseError(f"the teacher's project has no tests for: {', '.join(untested)}")
        return cls(root, chosen, {e.id for e in found}, tests,
                   {e.id: syllabus.lesson_of(e.id) for e in chosen}, ex.project_files(root))

    def source_files(self) -> list:
        return [f for f in self.files if f.parts[0] in ex.SOURCE_DIRS]

    def stubbed_version(self, rel: Path) -> str:
        """The teacher's ``rel`` with the graded exercises in it stubbed."""
        text = (self.root / rel).read_text(encoding="utf-8")
        mine = [e for e in self.exercises if e.file == rel]
        return ex.stub_text(text, mine) if mine else text


# --------------------------------------------------------------------------- reading a submission


def find_copy(folder: Path) -> tuple:
    """(the student copy in ``folder``, a note) or (None, why it is not one). A copy zipped with
    its folder (``alice/my-minitl/minitl``) is found one level down."""
    if not folder.is_dir():
        return None, f"not a folder: {folder.name} (unpack it into a folder of its own)"
    if (folder / "minitl" / "__init__.py").is_file():
        return folder, ""
    inner = [d for d in folder.iterdir() if d.is_dir() and (d / "minitl" / "__init__.py").is_file()]
    if len(inner) == 1:
        return inner[0], f"graded the copy inside {inner[0].relative_to(folder)}/"
    return None, (f"not a student copy: no minitl/__init__.py in {folder}"
                  + (" (several copies inside it)" if inner else "")
                  + "; hand in the folder that `minitl exercises export` wrote")


def _unusable(path: Path, rel: Path) -> str:
    """Why a source file of the submission cannot be used (not UTF-8, a syntax error), or ""."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        return (f"{rel.as_posix()} is not UTF-8 text (byte 0x{data[err.start]:02x} on line "
                f"{line}); save it as UTF-8")
    if rel.suffix == ".py":
        try:
            compile(text, rel.as_posix(), "exec", dont_inherit=True)
        except SyntaxError as err:
            return f"syntax error at {rel.as_posix()}:{err.lineno}: {err.msg}"
        except ValueError as err:  # e.g. a null byte
            return f"{rel.as_posix()} cannot be compiled: {err}"
    return ""


def _student_sources(copy: Path) -> list:
    """The regular files under the copy's source folders (no caches, no links), relative."""
    files = []
    for folder in ex.SOURCE_DIRS:
        base = copy / folder
        for path in sorted(base.rglob("*")) if base.is_dir() and not base.is_symlink() else []:
            rel = path.relative_to(copy)
            if path.is_symlink() or not path.is_file() or path.suffix in (".pyc", ".pyo") \
                    or "__pycache__" in rel.parts:
                continue
            files.append(rel)
    return files


def build_workspace(teacher: Teacher, copy: Path, work: Path) -> tuple:
    """Write into ``work`` the teacher's project with the submission's sources; return
    ({file: why it was replaced}, notes)."""
    sources = {f for f in teacher.source_files()}
    for rel in teacher.files:
        if rel not in sources:
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(teacher.root / rel, work / rel)
    damaged, notes = {}, []
    student = _student_sources(copy)
    for rel in student:
        problem = _unusable(copy / rel, rel) if rel.suffix in ex.LANGUAGES else ""
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        if problem:
            damaged[rel] = problem
        else:
            shutil.copyfile(copy / rel, work / rel)
    for rel in sorted(sources - set(student)):
        damaged[rel] = f"{rel.as_posix()} was deleted"
    for rel, problem in damaged.items():
        if rel not in sources:
            notes.append(f"{problem}; left out")
            continue
        # graded as not done, while the rest of the copy still imports
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.suffix in ex.LANGUAGES:
            (work / rel).write_text(teacher.stubbed_version(rel), encoding="utf-8")
        else:
            shutil.copyfile(teacher.root / rel, work / rel)
        notes.append(f"{problem}; graded with the teacher's version of the file")
    changed = _changed_outside_exercises(teacher, work, sources - set(damaged))
    if changed:
        notes.append("changed outside the exercises (graded as handed in; worth a look): "
                     + ", ".join(changed))
    edited = _edited_tests(teacher, copy)
    if edited:
        notes.append("tests differ from the teacher's (ignored: the teacher's tests grade): "
                     + ", ".join(edited))
    return damaged, notes


def _outside_regions(text: str, regions: list) -> list:
    lines = text.splitlines()
    for region in sorted(regions, key=lambda e: e.begin_line, reverse=True):
        lines[region.begin_line:region.end_line - 1] = []
    return lines


def _changed_outside_exercises(teacher: Teacher, work: Path, files) -> list:
    """The teacher's source files whose text in the submission differs outside the exercises
    (a student who edits minitl/gradcheck.py can make a test pass; the grader says so)."""
    changed = []
    for rel in sorted(files):
        mine, theirs = teacher.root / rel, work / rel
        if mine.read_bytes() == theirs.read_bytes():
            continue
        if rel == ex.FASTPATH_SWITCH:  # export turned the fast paths off there
            same = ex.fast_paths_off(mine.read_text(encoding="utf-8")) == theirs.read_text(encoding="utf-8")
        elif rel.suffix not in ex.LANGUAGES:
            same = False
        else:
            try:
                same = (_outside_regions(mine.read_text(encoding="utf-8"), ex.scan_file(mine, teacher.root))
                        == _outside_regions(theirs.read_text(encoding="utf-8"), ex.scan_file(theirs, work)))
            except ExerciseError:
                same = False
        if not same:
            changed.append(rel.as_posix())
    return changed


def _edited_tests(teacher: Teacher, copy: Path) -> list:
    edited = []
    for rel in teacher.files:
        if rel.parts[0] == ex.TESTS_DIR:
            theirs = copy / rel
            if not theirs.is_file():
                edited.append(f"{rel.as_posix()} (deleted)")
            elif theirs.read_bytes() != (teacher.root / rel).read_bytes():
                edited.append(rel.as_posix())
    return edited


def _import_problem(work: Path, timeout: float, memory_mb) -> str:
    """"" when the workspace's minitl imports; else the error in one line."""
    code = ("import resource, sys\nlimit = int(sys.argv[1])\nif limit:\n"
            "    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\nimport minitl\n")
    limit = int(memory_mb * 2 ** 20) if memory_mb else 0
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(limit)], cwd=work,
                              env=runs.exercise_env(work, batch=True), capture_output=True,
                              text=True, errors="replace", timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return f"import minitl ran past {timeout:g} s (an endless loop at import time?)"
    if proc.returncode == 0:
        return ""
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    frames = [(Path(path), line) for path, line in re.findall(r'File "([^"]+)", line (\d+)', proc.stderr)
              if Path(path).is_relative_to(work)]
    where = f" ({frames[-1][0].relative_to(work).as_posix()}:{frames[-1][1]})" if frames else ""
    return runs.shorten(f"import error: {lines[-1] if lines else 'exit ' + str(proc.returncode)}{where}")


# --------------------------------------------------------------------------- grading


def grade_student(teacher: Teacher, folder: Path, timeout=DEFAULT_TIMEOUT,
                  memory_mb=DEFAULT_MEMORY_MB) -> StudentReport:
    """Grade one submission folder; never raises for a broken submission."""
    try:
        return _grade_student(teacher, folder, timeout, memory_mb)
    except Exception as err:  # a submission nobody foresaw must not stop the class's grading
        report = StudentReport(folder.name, str(folder))
        reason = runs.shorten(f"the grader could not read this submission: {err!r}")
        report.grades = [Grade(e.id, teacher.lessons[e.id], False, "error", reason)
                         for e in teacher.exercises]
        return report


def _grade_student(teacher, folder, timeout, memory_mb) -> StudentReport:
    report = StudentReport(folder.name, str(folder))
    copy, note = find_copy(folder)
    if note:
        report.notes.append(note)
    ids = [e.id for e in teacher.exercises]

    def fail_all(state, reason):
        report.grades = [Grade(i, teacher.lessons[i], False, state, reason) for i in ids]
        return report

    if copy is None:
        return fail_all("error", note)
    package = Path("minitl/__init__.py")
    if not any((copy / f).is_file() for f in teacher.source_files() if f != package):
        return fail_all("error", f"not a student copy: {copy / 'minitl'} has none of the "
                                 f"library's modules; hand in the folder that `minitl exercises "
                                 f"export` wrote")
    with tempfile.TemporaryDirectory(prefix=f"minitl-grade-{folder.name}-") as scratch:
        work = Path(scratch)
        damaged, notes = build_workspace(teacher, copy, work)
        report.notes += notes
        broken = _import_problem(work, min(timeout, 120), memory_mb)
        if broken:
            return fail_all("error", broken)
        for exercise in teacher.exercises:
            if exercise.file in damaged:
                report.grades.append(Grade(exercise.id, teacher.lessons[exercise.id], False,
                                           "error", damaged[exercise.file]))
                continue
            tests = teacher.tests[exercise.id]
            run = runs.run_pytest(work, ["-q", "--tb=short", "--exercise", exercise.id,
                                         *runs.test_files(tests)],
                                  env=runs.exercise_env(work, batch=True), timeout=timeout,
                                  memory_mb=memory_mb)
            outcome = runs.judge(exercise.id, tests, run, teacher.all_ids, timeout)
            reason = outcome.blocked_text() if outcome.state == "blocked" else outcome.detail
            if "MemoryError" in reason:
                reason += f" (the limit is {memory_mb} MB)"
            report.grades.append(Grade(exercise.id, teacher.lessons[exercise.id], outcome.passed,
                                       outcome.state, reason, round(run.seconds, 1)))
    return report


def submission_folders(submissions: Path) -> list:
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise ExerciseError(f"{submissions} is not a folder; give the folder that holds one "
                            f"folder per student")
    entries = sorted(p for p in submissions.iterdir() if not p.name.startswith("."))
    if not entries:
        raise ExerciseError(f"{submissions} is empty; put one folder per student in it")
    return entries


def grade(submissions, teacher_root=None, only=None, lesson=None, timeout=DEFAULT_TIMEOUT,
          memory_mb=DEFAULT_MEMORY_MB, jobs: int = 1, on_student=None) -> list:
    """Grade every student folder in ``submissions``; returns one StudentReport each, by name.
    ``on_student(report)`` is called as each one is done, in name order."""
    teacher = Teacher.load(teacher_root, only, lesson)
    folders = submission_folders(Path(submissions))
    reports = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for report in pool.map(lambda f: grade_student(teacher, f, timeout, memory_mb), folders):
            reports.append(report)
            if on_student:
                on_student(report)
    return reports


# --------------------------------------------------------------------------- reports


def student_table(report: StudentReport) -> str:
    width = max((len(g.exercise) for g in report.grades), default=0)
    lines = [f"{report.name}: {report.passed} of {len(report.grades)} passed"]
    for g in report.grades:
        lines.append(f"  {'pass' if g.passed else 'FAIL'}  {g.exercise:<{width}}  "
                     f"{'' if g.passed else g.state + ': '}{g.reason}".rstrip())
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


def _rate(passed: int, total: int) -> str:
    """"  2/3   67%": passed of total, then the rate, in fixed columns."""
    return f"{passed}/{total}".rjust(6) + (f"{100 * passed / total:5.0f}%" if total else "     -")


def class_summary(reports: list) -> str:
    """The pass rate per exercise (in lesson order) and per student, and the class's total."""
    exercises = [(g.exercise, g.lesson) for g in reports[0].grades] if reports else []
    width = max([len("exercise"), *(len(e) for e, _ in exercises)])
    def count(n, what):
        return f"{n} {what}{'' if n == 1 else 's'}"

    lines = [f"Class summary: {count(len(reports), 'student')}, {count(len(exercises), 'exercise')}", "",
             f"{'exercise':<{width}}  lesson  passed  rate"]
    for position, (ex_id, lesson) in enumerate(exercises):
        passed = sum(r.grades[position].passed for r in reports)
        lines.append(f"{ex_id:<{width}}  {lesson if lesson is not None else '-':>6}  "
                     f"{_rate(passed, len(reports))}")
    names = max([len("student"), *(len(r.name) for r in reports)])
    lines += ["", f"{'student':<{names}}  passed  rate"]
    lines += [f"{r.name:<{names}}  {_rate(r.passed, len(r.grades))}" for r in reports]
    passed, total = sum(r.passed for r in reports), sum(len(r.grades) for r in reports)
    share = f" ({100 * passed / total:.0f}%)" if total else ""
    lines += ["", f"class: {passed} of {total} results passed{share}"]
    return "\n".join(lines)


def to_json(reports: list) -> dict:
    exercises = [g.exercise for g in reports[0].grades] if reports else []
    return {
        "students": [{"name": r.name, "folder": r.folder, "passed": r.passed,
                      "total": len(r.grades), "notes": r.notes,
                      "results": [asdict(g) for g in r.grades]} for r in reports],
        "pass_rate_per_exercise": {
            e: sum(r.grades[k].passed for r in reports) / len(reports) for k, e in enumerate(exercises)},
        "pass_rate_per_student": {r.name: r.passed / len(r.grades) if r.grades else 0.0
                                  for r in reports},
    }


def to_csv(reports: list) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student", "exercise", "lesson", "result", "state", "reason", "seconds"])
    for r in reports:
        for g in r.grades:
            writer.writerow([r.name, g.exercise, g.lesson if g.lesson is not None else "",
                             "pass" if g.passed else "fail", g.state, g.reason, g.seconds])
    return out.getvalue()


def write_atomically(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
