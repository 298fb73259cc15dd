"""The exercise machinery, on a small fake project built in tmp_path.

The fake project is a package also named ``minitl`` (so the tests also prove that a student
copy's minitl shadows the real one), with the real tests/conftest.py, three sound exercises
(one of which calls another), their tests, a fast-path switch, and two lessons that list the
exercises in an order different from the files'.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minitl import exercise_runs as runs
from minitl import exercises as ex
from minitl.exercises import ExerciseError

CONFTEST = Path(__file__).with_name("conftest.py")
REPO = Path(__file__).resolve().parent.parent

MATHOPS = '''\
"""Three exercises. A marker quoted in a docstring is not one:
    # BEGIN EXERCISE not.real
"""


def square(x):
    # BEGIN EXERCISE fake.square
    # hint: multiply "x" by itself
    result = x * x
    return result
    # END EXERCISE


class Accumulator:
    def total(self, xs):
        # BEGIN EXERCISE fake.total
        # hint: start from 0,
        # hint: then add each number
        s = 0
        for x in xs:
            s += x
        return s
        # END EXERCISE

    def mean(self, xs):
        return self.total(xs) / len(xs)


def sum_of_squares(xs):
    # BEGIN EXERCISE fake.sum_of_squares
    # hint: add up square(x) for each x
    return sum(square(x) for x in xs)
    # END EXERCISE
'''

TESTS = '''\
import pytest

from minitl.mathops import Accumulator, square, sum_of_squares


@pytest.mark.exercise("fake.square")
def test_square():
    assert square(3) == 9


@pytest.mark.exercise("fake.total")
class TestAccumulator:
    def test_total(self):
        assert Accumulator().total([1, 2, 3]) == 6

    @pytest.mark.parametrize("xs", [[2.0], [1.0, 3.0]])
    def test_mean(self, xs):
        assert Accumulator().mean(xs) == 2.0


@pytest.mark.exercise("fake.sum_of_squares")
def test_sum_of_squares():
    assert sum_of_squares([1, 2]) == 5


def test_unmarked():
    assert True
'''

LESSON = '''\
# %% [markdown]
# # Lesson {n}: {title}
#
# Prose may name `minitl exercises export DIR --lesson {n}` without listing anything.

# %%
print("lesson {n}")

# %% [markdown]
# ## Exercises
#
{lines}
'''


def lesson(n, title, ids):
    lines = "\n".join(f"# - `{i}`: `minitl exercises check {i}`" for i in ids)
    return LESSON.format(n=n, title=title, lines=lines)


def write(root: Path, files: dict) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def project(tmp_path):
    root = write(tmp_path / "fake", {
        "minitl/__init__.py": "from minitl.mathops import Accumulator, square\n",
        "minitl/mathops.py": MATHOPS,
        "minitl/fastpath/__init__.py": '"""The switch."""\nENABLED_BY_DEFAULT = True\n',
        "tests/test_mathops.py": TESTS,
        "lessons/lesson_01_basics.py": lesson(1, "basics", ["fake.square", "fake.sum_of_squares"]),
        "lessons/lesson_02_more.py": lesson(2, "more", ["fake.total"]),
        "README.md": "fake\n",
    })
    shutil.copy(CONFTEST, root / "tests" / "conftest.py")
    return root


def run_pytest(root: Path, *args):
    """pytest in ``root`` importing that folder's minitl; returns the finished process."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=root, env=runs.pytest_env(root), capture_output=True, text=True)


def solve(copy: Path, project: Path, ex_id: str):
    """Put the solution of ``ex_id`` back into the student copy (what a student does)."""
    theirs = {e.id: e for e in ex.find_exercises(copy)}[ex_id]
    mine = {e.id: e for e in ex.find_exercises(project)}[ex_id]
    solution = (project / mine.file).read_text().splitlines(keepends=True)[mine.begin_line:mine.end_line - 1]
    lines = (copy / theirs.file).read_text().splitlines(keepends=True)
    lines[theirs.begin_line:theirs.end_line - 1] = solution
    (copy / theirs.file).write_text("".join(lines))


# --------------------------------------------------------------------------- scanning


def test_find_exercises_reads_ids_lines_hints_and_indentation(project):
    found = ex.find_exercises(project)
    assert [e.id for e in found] == ["fake.square", "fake.total", "fake.sum_of_squares"]
    square, total, _ = found
    assert square.file == Path("minitl/mathops.py")
    assert (square.begin_line, square.end_line, square.indent) == (7, 11, "    ")
    assert square.hint == 'multiply "x" by itself'
    assert total.hint == "start from 0, then add each number"
    assert total.indent == " " * 8 and len(total.hint_lines) == 2
    assert not any(e.is_stub for e in found)


def test_tests_by_exercise_sees_function_and_class_marks(project):
    tests = ex.tests_by_exercise(project)
    assert tests == {
        "fake.square": ["tests/test_mathops.py::test_square"],
        "fake.total": ["tests/test_mathops.py::TestAccumulator::test_total",
                       "tests/test_mathops.py::TestAccumulator::test_mean"],
        "fake.sum_of_squares": ["tests/test_mathops.py::test_sum_of_squares"],
    }


GOOD = "def f():\n    # BEGIN EXERCISE a.b\n    # hint: h\n    return 1\n    # END EXERCISE\n"


@pytest.mark.parametrize("source, message", [
    (GOOD.replace("    # END EXERCISE\n", ""), "mod.py:2: exercise a.b is never closed"),
    ("def f():\n    return 1\n    # END EXERCISE\n", "mod.py:3: END EXERCISE without a BEGIN"),
    (GOOD.replace("    return 1\n", "    # BEGIN EXERCISE a.c\n    # hint: x\n    return 1\n"
                  "    # END EXERCISE\n"), "mod.py:4: BEGIN EXERCISE a.c inside exercise a.b"),
    ("# BEGIN EXERCISE a.b\n# hint: h\nX = 1\n# END EXERCISE\n", "mod.py:1: exercise a.b is not inside a function"),
    (GOOD.replace("    # hint: h\n", ""), "mod.py:2: exercise a.b has no '# hint: ...' line"),
    (GOOD.replace("    return 1\n", "    # only a comment\n") + "    return 1\n",
     "mod.py:2: exercise a.b has no code"),
    (GOOD.replace("    # END", "  # END"), "mod.py:5: END EXERCISE of a.b must be indented like"),
    (GOOD.replace("a.b", "a b"), "mod.py:2: expected '# BEGIN EXERCISE <id>'"),
])
def test_bad_markers_are_errors_naming_file_and_line(tmp_path, source, message):
    write(tmp_path, {"minitl/__init__.py": "", "minitl/mod.py": source})
    with pytest.raises(ExerciseError) as err:
        ex.find_exercises(tmp_path)
    assert message in str(err.value)


def test_duplicate_ids_name_both_places(tmp_path):
    write(tmp_path, {"minitl/__init__.py": "", "minitl/one.py": GOOD, "minitl/two.py": GOOD})
    with pytest.raises(ExerciseError, match=r"minitl/two.py:2: duplicate exercise id a.b "
                                            r"\(first at minitl/one.py:2\)"):
        ex.find_exercises(tmp_path)


# --------------------------------------------------------------------------- CUDA sources

KERNEL = '''\
// A kernel file. A marker in a block comment is not one: /* // BEGIN EXERCISE not.real */
#define MINITL_EXERCISE_STUB(msg) do { } while (0)

__global__ void scale(float* x, int n, float a)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        // BEGIN EXERCISE gpu.scale
        // hint: one thread per element: x[i] = a * x[i] ("in place")
        x[i] = a * x[i];
        // END EXERCISE
    }
}
'''


def test_cuda_exercises_are_found_and_stubbed_with_the_macro(tmp_path):
    project = write(tmp_path / "p", {"minitl/__init__.py": "", "kernels/scale.cu": KERNEL,
                                     "kernels/other.cuh": "// no exercise here\n"})
    (found,) = ex.find_exercises(project)
    assert (found.id, found.file, found.begin_line, found.end_line) == ("gpu.scale", Path("kernels/scale.cu"), 8, 11)
    assert found.hint == 'one thread per element: x[i] = a * x[i] ("in place")'
    assert found.language is ex.CUDA and not found.is_stub

    ex.export(tmp_path / "student", root=project)
    text = (tmp_path / "student/kernels/scale.cu").read_text()
    assert ("        // BEGIN EXERCISE gpu.scale\n"
            "        // hint: one thread per element: x[i] = a * x[i] (\"in place\")\n"
            "        MINITL_EXERCISE_STUB(\"exercise gpu.scale: one thread per element: "
            "x[i] = a * x[i] (\\\"in place\\\")\");\n"
            "        // END EXERCISE\n"
            "    }\n") in text
    assert "x[i] = a * x[i];" not in text
    (again,) = ex.find_exercises(tmp_path / "student")
    assert again.id == "gpu.scale" and again.is_stub


CUDA_GOOD = "void f()\n{\n    // BEGIN EXERCISE g.a\n    // hint: h\n    x = 1;\n    // END EXERCISE\n}\n"


@pytest.mark.parametrize("source, message", [
    ("// BEGIN EXERCISE g.a\n// hint: h\nint x = 1;\n// END EXERCISE\n", "k.cu:1: exercise g.a is not inside a function body"),
    (CUDA_GOOD.replace("    x = 1;\n", "    }\n    {\n"), "k.cu:3: the braces between the markers of exercise g.a do not balance"),
    (CUDA_GOOD.replace("    // hint: h\n", ""), "k.cu:3: exercise g.a has no '// hint: ...' line"),
    (CUDA_GOOD.replace("    x = 1;\n", "    // nothing\n"), "k.cu:3: exercise g.a has no code"),
    (CUDA_GOOD.replace("    // END EXERCISE\n", ""), "k.cu:3: exercise g.a is never closed (no '// END EXERCISE'"),
])
def test_bad_cuda_markers_are_errors_naming_file_and_line(tmp_path, source, message):
    write(tmp_path, {"minitl/__init__.py": "", "kernels/k.cu": source})
    with pytest.raises(ExerciseError) as err:
        ex.find_exercises(tmp_path)
    assert message in str(err.value)


# --------------------------------------------------------------------------- lessons


def test_syllabus_orders_exercises_by_lesson_and_place(project):
    syllabus = ex.Syllabus.read(project)
    found = ex.find_exercises(project)
    assert [e.id for e in syllabus.sort(found)] == ["fake.square", "fake.sum_of_squares", "fake.total"]
    assert [syllabus.lesson_of(i) for i in ("fake.square", "fake.sum_of_squares", "fake.total")] == [1, 1, 2]
    assert [e.id for e in syllabus.up_to(1, found)] == ["fake.square", "fake.sum_of_squares"]
    assert syllabus.problems(found) == []


def test_syllabus_names_unassigned_unknown_and_twice_listed_exercises(project):
    write(project, {"lessons/lesson_02_more.py": lesson(2, "more", ["fake.square", "fake.totl"])})
    problems = ex.Syllabus.read(project).problems(ex.find_exercises(project))
    assert len(problems) == 3, problems
    assert problems[0].startswith("lessons/lesson_02_more.py:12: exercise fake.square is already "
                                  "listed at lessons/lesson_01_basics.py:12")
    assert "`minitl exercises check fake.totl` names no exercise; unknown exercise id " \
           "'fake.totl'; did you mean fake.total?" in problems[1]
    assert problems[2].startswith("exercise fake.total (minitl/mathops.py:16) is in no lesson: add "
                                  "the line \"- `fake.total`: `minitl exercises check fake.total`\"")


# --------------------------------------------------------------------------- export


def test_export_stubs_every_region_with_the_hint_message(project, tmp_path):
    stubbed = ex.export(tmp_path / "student", root=project)
    assert [e.id for e in stubbed] == ["fake.square", "fake.sum_of_squares", "fake.total"]
    text = (tmp_path / "student/minitl/mathops.py").read_text()
    assert textwrap.dedent('''\
        def square(x):
            # BEGIN EXERCISE fake.square
            # hint: multiply "x" by itself
            raise NotImplementedError("exercise fake.square: multiply \\"x\\" by itself")
            # END EXERCISE
        ''') in text
    assert "result = x * x" not in text and "s += x" not in text
    assert ('        raise NotImplementedError("exercise fake.total: start from 0, then add each '
            'number")\n') in text
    # the copy still parses, and its regions are found again (markers stay for the student)
    again = ex.find_exercises(tmp_path / "student")
    assert [e.id for e in again] == ["fake.square", "fake.total", "fake.sum_of_squares"]
    assert all(e.is_stub for e in again)
    assert (tmp_path / "student/README.md").read_text() == "fake\n"
    manifest = json.loads((tmp_path / "student" / ex.MANIFEST).read_text())
    assert manifest["exercises"] == ["fake.square", "fake.sum_of_squares", "fake.total"]


def test_stub_raises_the_exact_message(project, tmp_path):
    ex.export(tmp_path / "student", root=project)
    namespace = {}
    exec((tmp_path / "student/minitl/mathops.py").read_text(), namespace)
    with pytest.raises(NotImplementedError) as err:
        namespace["square"](3)
    assert str(err.value) == 'exercise fake.square: multiply "x" by itself'


@pytest.mark.parametrize("choice, stubbed", [
    ({}, ["fake.square", "fake.sum_of_squares", "fake.total"]),
    ({"only": ["fake.total"]}, ["fake.total"]),
    ({"lesson": 1}, ["fake.square", "fake.sum_of_squares"]),
])
def test_export_stubs_the_chosen_exercises_and_turns_the_fast_paths_off(project, tmp_path, choice, stubbed):
    assert [e.id for e in ex.export(tmp_path / "student", root=project, **choice)] == stubbed
    copy = tmp_path / "student"
    assert sorted(e.id for e in ex.find_exercises(copy) if e.is_stub) == sorted(stubbed)
    switch = (copy / "minitl/fastpath/__init__.py").read_text()
    assert switch == '"""The switch."""\nENABLED_BY_DEFAULT = False\n'
    assert "ENABLED_BY_DEFAULT = True" in (project / "minitl/fastpath/__init__.py").read_text()


def test_export_refuses_a_switch_it_cannot_turn_off(project, tmp_path):
    write(project, {"minitl/fastpath/__init__.py": "def enabled():\n    return True\n"})
    with pytest.raises(ExerciseError, match="no 'ENABLED_BY_DEFAULT = True' line"):
        ex.export(tmp_path / "student", root=project)


def test_export_refuses_unknown_ids_with_suggestions_and_a_non_empty_folder(project, tmp_path):
    with pytest.raises(ExerciseError, match=r"unknown exercise id 'fake.sqare'; did you mean "
                                            r"fake.square\? \(the exercises are: fake.square, "
                                            r"fake.sum_of_squares, fake.total\)"):
        ex.export(tmp_path / "a", only=["fake.sqare"], root=project)
    with pytest.raises(ExerciseError, match="unknown exercise id 'total'; did you mean fake.total"):
        ex.export(tmp_path / "a", only=["total"], root=project)
    with pytest.raises(ExerciseError, match="no exercise belongs to lessons 1..0"):
        ex.export(tmp_path / "a", lesson=0, root=project)
    (tmp_path / "b").mkdir()
    (tmp_path / "b/keep.txt").write_text("mine")
    with pytest.raises(ExerciseError, match="not empty"):
        ex.export(tmp_path / "b", root=project)


def test_export_of_a_git_checkout_takes_its_files_not_ignored_ones(project, tmp_path):
    write(project, {".gitignore": "build/\n__pycache__/\n", "build/junk.txt": "x", "notes_untracked.md": "new\n"})
    (project / "minitl/__pycache__").mkdir()
    (project / "minitl/__pycache__/mathops.cpython-311.pyc").write_bytes(b"\0")
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "minitl", "tests", "lessons", "README.md", ".gitignore"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "fake"], check=True)
    ex.export(tmp_path / "student", root=project)
    copied = sorted(p.relative_to(tmp_path / "student").as_posix()
                    for p in (tmp_path / "student").rglob("*") if p.is_file())
    assert copied == [".gitignore", "README.md", "lessons/lesson_01_basics.py", "lessons/lesson_02_more.py",
                      "minitl/__init__.py", "minitl/fastpath/__init__.py", "minitl/mathops.py",
                      "notes_untracked.md", "student_copy.json", "tests/conftest.py", "tests/test_mathops.py"]


def test_export_without_git_skips_caches_and_builds(project, tmp_path):
    write(project, {"build/junk.txt": "x", "minitl/__pycache__/m.pyc": "x", ".pytest_cache/x": "x"})
    ex.export(tmp_path / "student", root=project)
    assert not (tmp_path / "student/build").exists()
    assert not (tmp_path / "student/minitl/__pycache__").exists()
    assert not (tmp_path / "student/.pytest_cache").exists()
    assert (tmp_path / "student/tests/conftest.py").is_file()


# --------------------------------------------------------------------------- running the tests


def test_solution_passes_and_student_copy_fails_with_the_stub(project, tmp_path):
    solution = run_pytest(project, "--exercise", "fake.total")
    assert solution.returncode == 0, solution.stdout
    assert "3 passed, 3 deselected" in solution.stdout
    assert f"minitl under test: {project / 'minitl' / '__init__.py'}" in solution.stdout

    copy = tmp_path / "student"
    ex.export(copy, root=project)
    student = run_pytest(copy, "--exercise", "fake.total")
    assert student.returncode == 1
    assert "3 failed, 3 deselected" in student.stdout
    assert "NotImplementedError: exercise fake.total: start from 0, then add each number" in student.stdout
    assert f"minitl under test: {copy / 'minitl' / '__init__.py'}" in student.stdout


def test_check_runs_only_that_exercise_and_ends_with_one_line(project, capsys):
    assert runs.check("fake.square", root=project, pytest_args=["-q"]) == 0
    out = capsys.readouterr().out
    assert "1 passed, 5 deselected" in out
    assert out.splitlines()[-1] == "fake.square: passing: 1 test passed"
    with pytest.raises(ExerciseError, match="unknown exercise id 'fake.nope'"):
        runs.check("fake.nope", root=project)


def test_check_says_which_stub_blocks_an_exercise(project, tmp_path, capsys):
    copy = tmp_path / "student"
    ex.export(copy, root=project, only=["fake.square"])  # sum_of_squares keeps its solution
    assert runs.check("fake.sum_of_squares", root=copy, pytest_args=["-q"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == ("fake.sum_of_squares: blocked by fake.square (still a stub); "
                       "do that one first")
    assert runs.check("fake.square", root=copy, pytest_args=["-q"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == \
        "fake.square: not started: its region at minitl/mathops.py:7 still raises NotImplementedError"


def test_check_outside_a_copy_says_where_it_looked(tmp_path, monkeypatch):
    nowhere = tmp_path / "a" / "b"
    nowhere.mkdir(parents=True)
    monkeypatch.chdir(nowhere)
    with pytest.raises(ExerciseError) as err:
        runs.check("fake.square")
    message = str(err.value)
    assert message.startswith(f"not inside a student copy: looked for minitl/__init__.py in "
                              f"{nowhere.resolve()}, {nowhere.resolve().parent}, ")
    assert "`minitl exercises export DIR`" in message and "--root" in message


def test_status_reports_not_started_failing_and_passing(project, tmp_path, capsys):
    from minitl import cli

    copy = tmp_path / "student"
    ex.export(copy, root=project)
    solve(copy, project, "fake.square")
    # a wrong total: its first failing assertion is the one line of detail
    mathops = copy / "minitl/mathops.py"
    mathops.write_text(mathops.read_text().replace(
        '        raise NotImplementedError("exercise fake.total: start from 0, then add each number")\n',
        "        return 0\n"))
    assert cli.main(["exercises", "--root", str(copy), "status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["lesson", "exercise", "status", "detail"]
    stub = {e.id: e for e in ex.find_exercises(copy)}["fake.sum_of_squares"]
    assert out[1].split() == ["1", "fake.square", "passing", "1", "test", "passed"]
    assert out[2].split() == ["1", "fake.sum_of_squares", "not", "started", stub.location, "still",
                              "raises", "NotImplementedError"]
    assert out[3].split(None, 3)[:3] == ["2", "fake.total", "failing"]
    assert out[3].split(None, 3)[3].startswith("TestAccumulator::test_total: assert 0 == 6")
    assert out[-1] == "total: 3 exercises: 1 passing, 1 failing, 1 not started"


def test_status_shows_only_the_exercises_handed_out(project, tmp_path):
    copy = tmp_path / "student"
    ex.export(copy, root=project, lesson=1)
    rows, note = runs.status(copy)
    assert [(r.lesson, r.outcome.id, r.outcome.state) for r in rows] == [
        (1, "fake.square", "not started"), (1, "fake.sum_of_squares", "not started")]
    assert note.startswith("1 more exercises are solved in this copy")


def test_verify_accepts_sound_exercises_and_names_the_weak_ones(project):
    # Two more exercises: one whose test never calls it, one without any test.
    write(project, {
        "minitl/extra.py": GOOD.replace("a.b", "fake.weak") + "\n\n"
                           + GOOD.replace("a.b", "fake.untested").replace("def f", "def g"),
        "tests/test_extra.py": "import pytest\n\n\n@pytest.mark.exercise('fake.weak')\n"
                               "def test_weak():\n    assert 1 + 1 == 2\n",
    })
    results = {r.id: r for r in runs.verify(project, jobs=2)}
    assert results["fake.square"].ok and results["fake.total"].ok, \
        results["fake.square"].output + results["fake.total"].output
    assert results["fake.total"].failed and not results["fake.total"].passed
    assert results["fake.total"].reached_stub
    assert Path(results["fake.total"].imported_from).parent.parent.name == "fake.total"
    assert results["fake.weak"].problem == "passes on the stub: tests/test_extra.py::test_weak"
    assert results["fake.untested"].problem.startswith("no test carries")


def test_prerequisites_are_found_by_running_and_shown_by_list(project, capsys):
    from minitl import cli

    found = runs.find_prerequisites(project, jobs=2)
    assert found == {"fake.sum_of_squares": ["fake.square"]}
    path = runs.write_prerequisites(found, [e.id for e in ex.find_exercises(project)], project)
    assert path == project / runs.DEPS_FILE
    written = json.loads(path.read_text())
    assert written["about"].startswith("Generated by `minitl exercises deps --write`")
    assert written["exercises"] == ["fake.square", "fake.sum_of_squares", "fake.total"]
    assert runs.load_prerequisites(project) == found

    assert cli.main(["exercises", "--root", str(project), "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].split() == ["fake.sum_of_squares", "needs", "fake.square"]


def test_cli_list_shows_lesson_location_test_count_and_hint(project, capsys):
    from minitl import cli

    assert cli.main(["exercises", "--root", str(project), "list"]) == 0
    out = capsys.readouterr().out
    rows = [line.split(None, 4) for line in out.splitlines()[1:4]]
    assert rows == [["1", "fake.square", "minitl/mathops.py:7", "1", 'multiply "x" by itself'],
                    ["1", "fake.sum_of_squares", "minitl/mathops.py:30", "1", "add up square(x) for each x"],
                    ["2", "fake.total", "minitl/mathops.py:16", "2", "start from 0, then add each number"]]
    assert "3 exercises, in the order the lessons meet them." in out
    assert cli.main(["exercises", "--root", str(project), "export", str(project / "x"),
                     "--only", "nope"]) == 2
    assert "minitl: error: unknown exercise id 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------- a closed pipe


def minitl_into(shell_tail: str):
    """`python -m minitl ...` of this checkout, its output piped into ``shell_tail``."""
    return subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m minitl {shell_tail}"],
                          cwd=REPO, capture_output=True, text=True, env=runs.pytest_env(REPO))


@pytest.mark.parametrize("command", ["exercises list", "--help", "lesson"])
def test_piping_into_head_ends_quietly(command):
    result = minitl_into(f"{command} | head -1")
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1
    assert result.returncode in (0, 141)  # 141: killed-by-SIGPIPE, as `yes | head -1` reports


def test_a_closed_pipe_exits_141_without_a_traceback():
    # Deterministic: stdout is a pipe whose reader is already gone before anything is written.
    script = ("import os, sys\nr, w = os.pipe()\nos.close(r)\nos.dup2(w, 1)\n"
              "from minitl.cli import main\nsys.exit(main(['exercises', 'list']))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, env=runs.pytest_env(REPO))
    assert (result.returncode, result.stderr) == (141, "")
