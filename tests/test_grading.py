"""``minitl exercises grade``: what a teacher does with a folder of submissions.

The first test grades the real library: three submissions made from a fresh export (one
solved, one half solved with an edited test, one broken by a syntax error and an endless loop).
The others use the small fake project of test_exercises_tooling.py, one broken submission of
each kind, which costs a fraction of a second per exercise.
"""
import ast
import csv
import json
import shutil
import time
from pathlib import Path

import pytest

from minitl import cli, grading
from minitl import exercises as ex
from test_exercises_tooling import project, write  # noqa: F401  (project is a fixture)

REPO = Path(__file__).resolve().parent.parent


def set_region(copy: Path, ex_id: str, code: list):
    """Replace the code of exercise ``ex_id`` in ``copy`` by ``code`` (lines, unindented)."""
    region = {e.id: e for e in ex.find_exercises(copy)}[ex_id]
    path = copy / region.file
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    first = region.begin_line + len(region.hint_lines)
    lines[first:region.end_line - 1] = [f"{region.indent}{line}\n" for line in code]
    path.write_text("".join(lines), encoding="utf-8")
    return region.file, first + 1  # the file, and the line where ``code`` starts


def solve(copy: Path, ex_id: str, solution_root: Path = REPO):
    """Put the solution of ``ex_id`` back into ``copy``: what a student who did it hands in."""
    mine = {e.id: e for e in ex.find_exercises(solution_root)}[ex_id]
    text = (solution_root / mine.file).read_text(encoding="utf-8").splitlines()
    body = text[mine.begin_line + len(mine.hint_lines):mine.end_line - 1]
    set_region(copy, ex_id, [line[len(mine.indent):] for line in body])


def hollow_tests(copy: Path, ex_id: str):
    """Edit the student copy's tests of ``ex_id`` so that they pass whatever the code does."""
    for test in ex.tests_by_exercise(copy)[ex_id]:
        path = copy / test.split("::")[0]
        name = test.split("::")[-1]
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        for node in ast.walk(ast.parse("".join(lines))):
            if isinstance(node, ast.FunctionDef) and node.name == name:
                indent = " " * node.body[0].col_offset
                lines[node.body[0].lineno - 1:node.end_lineno] = [f"{indent}pass\n"]
                break
        path.write_text("".join(lines), encoding="utf-8")


def snapshot(folder: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


# Four exercises of the library, in three files: a subset keeps the test quick.
SUBSET = ["autograd.exp_backward", "autograd.log_backward", "embeddings.three_cos_add",
          "embeddings.glove_weighting"]


def test_a_teacher_grades_three_submissions_of_the_library(tmp_path, capsys):
    start = time.monotonic()
    handout = tmp_path / "handout"
    ex.export(handout, only=SUBSET, root=REPO)
    submissions = tmp_path / "submissions"
    ada, bob, cyd = (submissions / name for name in ("ada", "bob", "cyd"))
    for student in (ada, bob, cyd):
        shutil.copytree(handout, student)
    for ex_id in SUBSET:
        solve(ada, ex_id)
        solve(cyd, ex_id)
    # bob: half done, and he hollowed out the test of one he did not do
    solve(bob, "autograd.exp_backward")
    solve(bob, "embeddings.glove_weighting")
    hollow_tests(bob, "autograd.log_backward")
    # cyd: a syntax error in one file, an endless loop in another
    set_region(cyd, "embeddings.glove_weighting", ["while True:", "    x = x + 0"])
    broken_file, broken_line = set_region(cyd, "embeddings.three_cos_add", ["return unit @ (query"])
    before = snapshot(submissions)

    reports = grading.grade(submissions, teacher_root=REPO, only=SUBSET, timeout=30, jobs=3)
    seconds = time.monotonic() - start
    tables = "\n\n".join(grading.student_table(r) for r in reports)
    timings = ", ".join(f"{r.name} {sum(g.seconds for g in r.grades):.0f} s" for r in reports)
    summary = grading.class_summary(reports)
    with capsys.disabled():  # the closing note quotes these, as printed
        print(f"\n{tables}\n\n{summary}\n\nthe teacher's test took {seconds:.1f} s "
              f"(pytest time per student: {timings})")

    assert snapshot(submissions) == before, "the grader wrote into a submission"
    by_name = {r.name: r for r in reports}
    assert [r.name for r in reports] == ["ada", "bob", "cyd"]
    assert [(r.passed, len(r.grades)) for r in reports] == [(4, 4), (2, 4), (2, 4)]
    order = ["autograd.exp_backward", "autograd.log_backward", "embeddings.three_cos_add",
             "embeddings.glove_weighting"]  # lesson order: lessons 1, 1, 4, 5
    assert [g.exercise for g in by_name["ada"].grades] == order

    bob_grades = {g.exercise: g for g in by_name["bob"].grades}
    assert [bob_grades[i].passed for i in order] == [True, False, False, True]
    # the hollowed test did not count: the teacher's test ran against the stub
    assert bob_grades["autograd.log_backward"].state == "not started"
    assert any(n.startswith("tests differ from the teacher's (ignored") and "tests/test_gradcheck_ops.py" in n
               for n in by_name["bob"].notes), by_name["bob"].notes

    cyd_grades = {g.exercise: g for g in by_name["cyd"].grades}
    assert [cyd_grades[i].passed for i in order] == [True, True, False, False]  # still graded
    assert cyd_grades["embeddings.three_cos_add"].reason == \
        f"syntax error at {broken_file.as_posix()}:{broken_line}: '(' was never closed"
    assert cyd_grades["embeddings.glove_weighting"].state == "timed out"
    assert cyd_grades["embeddings.glove_weighting"].reason == "its tests ran past 30 s (an endless loop?)"
    assert "class: 8 of 12 results passed (67%)" in summary


# --------------------------------------------------------------------------- broken submissions


@pytest.fixture
def handout(project, tmp_path):  # noqa: F811
    copy = tmp_path / "handout"
    ex.export(copy, root=project)
    return copy


def submit(handout: Path, folder: Path, solved=(), root=None) -> Path:
    shutil.copytree(handout, folder)
    for ex_id in solved:
        solve(folder, ex_id, root)
    return folder


def test_every_kind_of_broken_submission_is_reported_per_exercise(project, handout, tmp_path):  # noqa: F811
    subs = tmp_path / "subs"
    all_three = ["fake.square", "fake.total", "fake.sum_of_squares"]
    # ann: two solved; a wrong total, with its test edited to agree with it
    ann = submit(handout, subs / "ann", ["fake.square", "fake.sum_of_squares"], project)
    set_region(ann, "fake.total", ["return 0"])
    test_file = ann / "tests/test_mathops.py"
    test_file.write_text(test_file.read_text().replace("total([1, 2, 3]) == 6", "total([1, 2, 3]) == 0"))
    # ben: square solved, total asks for 8 GiB, sum_of_squares not started
    ben = submit(handout, subs / "ben", ["fake.square"], project)
    set_region(ben, "fake.total", ["return len(bytearray(8 * 2 ** 30))"])
    # cat: a file that is not UTF-8
    cat = submit(handout, subs / "cat", all_three, project)
    mathops = cat / "minitl/mathops.py"
    mathops.write_bytes(mathops.read_bytes().replace(b"Three exercises", b"Drei \xdcbungen"))
    # dan: deleted the file of the exercises
    dan = submit(handout, subs / "dan", all_three, project)
    (dan / "minitl/mathops.py").unlink()
    # eve: an import error
    eve = submit(handout, subs / "eve", all_three, project)
    (eve / "minitl/__init__.py").write_text("import no_such_module\n" + (eve / "minitl/__init__.py").read_text())
    # fay: not a student copy at all; gus: a solved copy zipped inside its own folder
    write(subs / "fay", {"notes.txt": "my homework\n"})
    submit(handout, subs / "gus" / "my-minitl", all_three, project)
    (subs / "hal.zip").write_bytes(b"PK\x03\x04")
    before = snapshot(subs)

    reports = {r.name: r for r in grading.grade(subs, teacher_root=project, memory_mb=1024)}
    assert snapshot(subs) == before, "the grader wrote into a submission"
    grades = {name: [(g.exercise, g.passed, g.state, g.reason) for g in r.grades]
              for name, r in reports.items()}
    assert [name for name in reports] == ["ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal.zip"]
    assert [g[:3] for g in grades["ann"]] == [("fake.square", True, "passing"),
                                             ("fake.sum_of_squares", True, "passing"),
                                             ("fake.total", False, "failing")]
    assert grades["ann"][2][3].startswith("TestAccumulator::test_total: assert 0 == 6")
    assert any("tests/test_mathops.py" in n for n in reports["ann"].notes)
    assert [g[1:3] for g in grades["ben"]] == [(True, "passing"), (False, "not started"), (False, "failing")]
    assert grades["ben"][2][3].endswith("MemoryError (the limit is 1024 MB)")
    assert {g[3] for g in grades["cat"]} == {
        "minitl/mathops.py is not UTF-8 text (byte 0xdc on line 1); save it as UTF-8"}
    assert {g[3] for g in grades["dan"]} == {"minitl/mathops.py was deleted"}
    assert {g[3] for g in grades["eve"]} == {
        "import error: ModuleNotFoundError: No module named 'no_such_module' (minitl/__init__.py:1)"}
    assert {g[3] for g in grades["fay"]} == {
        f"not a student copy: no minitl/__init__.py in {subs / 'fay'}; hand in the folder that "
        f"`minitl exercises export` wrote"}
    assert [g[1] for g in grades["gus"]] == [True, True, True]
    assert reports["gus"].notes == ["graded the copy inside my-minitl/"]
    assert {g[3] for g in grades["hal.zip"]} == {"not a folder: hal.zip (unpack it into a folder of its own)"}
    assert [r.passed for r in reports.values()] == [2, 1, 0, 0, 0, 0, 3, 0]


def test_grade_command_prints_tables_and_summary_and_writes_json_and_csv(project, handout, tmp_path, capsys):  # noqa: F811
    subs = tmp_path / "subs"
    submit(handout, subs / "ann", ["fake.square"], project)
    submit(handout, subs / "ben", ["fake.square", "fake.total", "fake.sum_of_squares"], project)
    code = cli.main(["exercises", "grade", str(subs), "--tests", str(project), "--lesson", "1",
                     "--json", str(tmp_path / "out/grades.json"), "--csv", str(tmp_path / "grades.csv")])
    assert code == 0
    out = capsys.readouterr().out
    assert ("ann: 1 of 2 passed\n"
            "  pass  fake.square          1 test passed\n"
            "  FAIL  fake.sum_of_squares  not started: its region still raises NotImplementedError\n") in out
    assert "Class summary: 2 students, 2 exercises" in out
    assert ("exercise             lesson  passed  rate\n"
            "fake.square               1     2/2  100%\n"
            "fake.sum_of_squares       1     1/2   50%\n") in out
    assert "student  passed  rate\nann         1/2   50%\nben         2/2  100%\n" in out
    assert "class: 3 of 4 results passed (75%)" in out
    data = json.loads((tmp_path / "out/grades.json").read_text())
    assert data["pass_rate_per_exercise"] == {"fake.square": 1.0, "fake.sum_of_squares": 0.5}
    assert data["pass_rate_per_student"] == {"ann": 0.5, "ben": 1.0}
    rows = list(csv.DictReader((tmp_path / "grades.csv").open()))
    assert [(r["student"], r["exercise"], r["lesson"], r["result"]) for r in rows] == [
        ("ann", "fake.square", "1", "pass"), ("ann", "fake.sum_of_squares", "1", "fail"),
        ("ben", "fake.square", "1", "pass"), ("ben", "fake.sum_of_squares", "1", "pass")]
