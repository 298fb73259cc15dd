"""The exercise machinery, on a small fake project built in tmp_path.

The fake project is a package also named ``minitl`` (so the tests also prove that a student
copy's minitl shadows the real one), with the real tests/conftest.py, two sound exercises and
their tests.
"""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minitl import exercises as ex
from minitl.exercises import ExerciseError

CONFTEST = Path(__file__).with_name("conftest.py")

MATHOPS = '''\
"""Two exercises. A marker quoted in a docstring is not one:
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
'''

TESTS = '''\
import pytest

from minitl.mathops import Accumulator, square


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


def test_unmarked():
    assert True
'''


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
        "tests/test_mathops.py": TESTS,
        "README.md": "fake\n",
    })
    shutil.copy(CONFTEST, root / "tests" / "conftest.py")
    return root


def run_pytest(root: Path, *args):
    """pytest in ``root`` importing that folder's minitl; returns the finished process."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=root, env=ex.pytest_env(root), capture_output=True, text=True)


# --------------------------------------------------------------------------- scanning


def test_find_exercises_reads_ids_lines_hints_and_indentation(project):
    found = ex.find_exercises(project)
    assert [e.id for e in found] == ["fake.square", "fake.total"]  # not the docstring's marker
    square, total = found
    assert square.file == Path("minitl/mathops.py")
    assert (square.begin_line, square.end_line, square.indent) == (7, 11, "    ")
    assert square.hint == 'multiply "x" by itself'
    assert total.hint == "start from 0, then add each number"
    assert total.indent == " " * 8 and len(total.hint_lines) == 2


def test_tests_by_exercise_sees_function_and_class_marks(project):
    tests = ex.tests_by_exercise(project)
    assert tests == {
        "fake.square": ["tests/test_mathops.py::test_square"],
        "fake.total": ["tests/test_mathops.py::TestAccumulator::test_total",
                       "tests/test_mathops.py::TestAccumulator::test_mean"],
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


# --------------------------------------------------------------------------- export


def test_export_stubs_every_region_with_the_hint_message(project, tmp_path):
    stubbed = ex.export(tmp_path / "student", root=project)
    assert [e.id for e in stubbed] == ["fake.square", "fake.total"]
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
    assert [e.id for e in ex.find_exercises(tmp_path / "student")] == ["fake.square", "fake.total"]
    assert (tmp_path / "student/README.md").read_text() == "fake\n"


def test_stub_raises_the_exact_message(project, tmp_path):
    ex.export(tmp_path / "student", root=project)
    namespace = {}
    exec((tmp_path / "student/minitl/mathops.py").read_text(), namespace)
    with pytest.raises(NotImplementedError) as err:
        namespace["square"](3)
    assert str(err.value) == 'exercise fake.square: multiply "x" by itself'


def test_export_only_stubs_the_chosen_exercise(project, tmp_path):
    ex.export(tmp_path / "student", only=["fake.total"], root=project)
    text = (tmp_path / "student/minitl/mathops.py").read_text()
    assert "result = x * x" in text and "s += x" not in text


def test_export_refuses_unknown_ids_and_a_non_empty_folder(project, tmp_path):
    with pytest.raises(ExerciseError, match="unknown exercise id.*nope.*known: fake.square, fake.total"):
        ex.export(tmp_path / "a", only=["nope"], root=project)
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
    subprocess.run(git + ["add", "minitl", "tests", "README.md", ".gitignore"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "fake"], check=True)
    ex.export(tmp_path / "student", root=project)
    copied = sorted(p.relative_to(tmp_path / "student").as_posix()
                    for p in (tmp_path / "student").rglob("*") if p.is_file())
    assert copied == [".gitignore", "README.md", "minitl/__init__.py", "minitl/mathops.py",
                      "notes_untracked.md", "tests/conftest.py", "tests/test_mathops.py"]


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
    assert "3 passed, 2 deselected" in solution.stdout
    assert f"minitl under test: {project / 'minitl' / '__init__.py'}" in solution.stdout

    copy = tmp_path / "student"
    ex.export(copy, root=project)
    student = run_pytest(copy, "--exercise", "fake.total")
    assert student.returncode == 1
    assert "3 failed, 2 deselected" in student.stdout
    assert "NotImplementedError: exercise fake.total: start from 0, then add each number" in student.stdout
    assert f"minitl under test: {copy / 'minitl' / '__init__.py'}" in student.stdout


def test_check_runs_only_that_exercise_in_the_given_project(project, capfd):
    assert ex.check("fake.square", root=project, pytest_args=["-q"]) == 0
    assert "1 passed, 4 deselected" in capfd.readouterr().out
    with pytest.raises(ExerciseError, match="unknown exercise id"):
        ex.check("fake.nope", root=project)


def test_verify_accepts_sound_exercises_and_names_the_weak_ones(project):
    # Two more exercises: one whose test never calls it, one without any test.
    write(project, {
        "minitl/extra.py": GOOD.replace("a.b", "fake.weak") + "\n\n"
                           + GOOD.replace("a.b", "fake.untested").replace("def f", "def g"),
        "tests/test_extra.py": "import pytest\n\n\n@pytest.mark.exercise('fake.weak')\n"
                               "def test_weak():\n    assert 1 + 1 == 2\n",
    })
    results = {r.id: r for r in ex.verify(project, jobs=2)}
    assert results["fake.square"].ok and results["fake.total"].ok, \
        results["fake.square"].output + results["fake.total"].output
    assert results["fake.total"].failed and not results["fake.total"].passed
    assert results["fake.total"].reached_stub
    assert Path(results["fake.total"].imported_from).parent.parent.name == "fake.total"
    assert results["fake.weak"].problem == "passes on the stub: tests.test_extra::test_weak"
    assert results["fake.untested"].problem.startswith("no test carries")


def test_cli_list_shows_location_test_count_and_hint(project, capsys):
    from minitl import cli

    assert cli.main(["exercises", "--root", str(project), "list"]) == 0
    out = capsys.readouterr().out
    rows = [line.split(None, 3) for line in out.splitlines()[1:3]]
    assert rows == [["fake.square", "minitl/mathops.py:7", "1", 'multiply "x" by itself'],
                    ["fake.total", "minitl/mathops.py:16", "2", "start from 0, then add each number"]]
    assert "2 exercises" in out
    assert cli.main(["exercises", "--root", str(project), "export", str(project / "x"),
                     "--only", "nope"]) == 2
    assert "minitl: error: unknown exercise id" in capsys.readouterr().err
