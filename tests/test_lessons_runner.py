"""The lesson runner, the report API and the tour, on the demo lesson in tests/fixtures/lessons."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minitl import lesson_runner as lessons, report
from minitl.lesson_runner import Lesson, LessonError

FIXTURES = Path(__file__).parent / "fixtures" / "lessons"
DEMO = FIXTURES / "lesson_01_demo.py"
ROOT = Path(__file__).resolve().parent.parent

FAILING = '''\
# %% [markdown]
# # Lesson 2: a lesson that breaks

# %%
from minitl import report
report.table([[1, 2]], headers=["a", "b"], title="Before the error")

# %%
values = [1, 2, 3]
total = sum(values)
values[10]
'''


def cli(*args, stdin="", env=None):
    """`python -m minitl.cli ARGS` in a subprocess, importing this checkout's minitl."""
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "minitl.cli", *args], input=stdin,
                          capture_output=True, text=True, env=env)


@pytest.fixture
def lesson_dir(tmp_path):
    """A lessons folder with the demo as lesson 1 and a failing lesson 2."""
    folder = tmp_path / "lessons"
    folder.mkdir()
    shutil.copy(DEMO, folder / DEMO.name)
    (folder / "lesson_02_broken.py").write_text(FAILING)
    return folder


# --------------------------------------------------------------------------- parsing and finding


def test_cells_agree_with_jupytext():
    import jupytext

    cells = Lesson.from_path(DEMO).cells
    notebook = jupytext.read(DEMO, fmt="py:percent")
    assert [c.kind for c in cells] == [c.cell_type for c in notebook.cells]
    assert [c.source.strip() for c in cells] == [c.source.strip() for c in notebook.cells]
    assert cells[1].line == 8 and DEMO.read_text().splitlines()[7] == "import numpy as np"


def test_find_lessons_by_number_slug_and_path(lesson_dir):
    found = lessons.find_lessons([lesson_dir])
    assert [(l.number, l.slug) for l in found] == [(1, "demo"), (2, "broken")]
    assert found[0].title == "Lesson 1: a demo lesson"
    assert lessons.get_lesson("2", [lesson_dir]).slug == "broken"
    assert lessons.get_lesson("demo", [lesson_dir]).number == 1
    assert lessons.get_lesson(str(DEMO)).path == DEMO.resolve()
    with pytest.raises(LessonError, match=r"no lesson '7'; lessons: 1 \(demo\), 2 \(broken\)"):
        lessons.get_lesson(7, [lesson_dir])


# --------------------------------------------------------------------------- running


def test_run_in_fast_mode_uses_small_data_and_restores_the_environment(capsys, monkeypatch):
    monkeypatch.delenv("MINITL_FAST", raising=False)
    ran = lessons.run_lesson(Lesson.from_path(DEMO), fast=True)
    out = capsys.readouterr().out
    assert ran == 5
    assert "fast mode: True" in out and "| 2 | 4 |" in out and "| 3 | 9 |" not in out
    assert "\n30\n" in out  # a cell's last expression is shown, like a notebook
    assert (Path(os.environ["MINITL_OUTPUT"]) / "demo" / "squares.png").stat().st_size > 1000
    assert "MINITL_FAST" not in os.environ and "MINITL_LESSON" not in os.environ


def test_without_fast_mode_the_lesson_uses_its_full_data(capsys, monkeypatch):
    monkeypatch.delenv("MINITL_FAST", raising=False)
    lessons.run_lesson(Lesson.from_path(DEMO))
    out = capsys.readouterr().out
    assert "fast mode: False" in out and "| 4 | 16 |" in out


def test_step_mode_with_piped_enter_then_q(tmp_path):
    result = cli("lesson", str(DEMO), "--step", "--fast", stdin="\nq\n",
                 env={"MINITL_OUTPUT": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # step 1 shows the text, the code with the file's line numbers, its output, then waits
    assert out.index("A tiny lesson") < out.index("   8 | import numpy as np") \
        < out.index("fast mode: True") < out.index("[2/5] Enter: next, q: quit >")
    assert "| 2 | 4 |" in out and "[4/5] Enter" in out  # Enter went on to the second step
    assert "Stopped after cell 4 of 5." in out  # q quit before the figure cell ran
    assert not (tmp_path / "demo" / "squares.png").exists()


def test_step_mode_pauses_once_per_step_and_runs_on_when_stdin_closes(capsys):
    prompts = []

    def closed_stdin(prompt):
        prompts.append(prompt)
        raise EOFError

    assert lessons.run_lesson(Lesson.from_path(DEMO), step=True, fast=True, ask=closed_stdin) == 5
    # a text cell and the code after it are one step; no pause after the last cell
    assert [p.split("]")[0] for p in prompts] == ["[2/5", "[4/5"]
    assert "End of Lesson 1" in capsys.readouterr().out


def test_an_error_names_the_cell_and_the_lesson_line(lesson_dir):
    with pytest.raises(LessonError) as err:
        lessons.run_lesson(lessons.get_lesson(2, [lesson_dir]))
    assert (err.value.cell, err.value.line) == (3, 11)
    message = str(err.value)
    assert "lesson 2 failed in cell 3 (lesson_02_broken.py, line 11)" in message
    assert "IndexError: list index out of range" in message
    assert "values[10]" in message  # the traceback quotes the lesson's own line

    result = cli("lesson", "2", env={"MINITL_LESSONS": str(lesson_dir)})
    assert result.returncode == 1
    assert "failed in cell 3 (lesson_02_broken.py, line 11)" in result.stderr


def test_a_syntax_error_also_names_its_line(tmp_path):
    path = tmp_path / "lesson_03_typo.py"
    path.write_text("# %%\nx = 1\n\n# %%\ny = (x +\n")
    with pytest.raises(LessonError, match=r"cell 2 \(lesson_03_typo.py, line 5\)"):
        lessons.run_lesson(Lesson.from_path(path))


def test_notebook_export_is_a_valid_ipynb_that_jupytext_reads_back(tmp_path):
    import jupytext
    import nbformat

    target = tmp_path / "demo.ipynb"
    result = cli("lesson", str(DEMO), "--notebook", str(target),
                 env={"MINITL_OUTPUT": str(tmp_path / "out")})
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "out").exists()  # written, not run
    notebook = nbformat.read(target, as_version=4)
    nbformat.validate(notebook)
    back = jupytext.read(target)
    assert [c.cell_type for c in back.cells] == ["markdown", "code", "markdown", "code", "code"]
    assert "report.figure(fig" in back.cells[4].source


# --------------------------------------------------------------------------- the report API


def test_report_records_json_lines_only_when_asked(tmp_path, monkeypatch, capsys):
    import numpy as np

    monkeypatch.setattr(report, "_current_slug", None)  # no lesson asked for its output_dir yet
    monkeypatch.setenv("MINITL_LESSON", "unit")
    report.table([[1, np.float32(0.123456)]], headers=["a", "b"])
    assert not list(tmp_path.iterdir())  # nothing recorded without $MINITL_REPORT

    monkeypatch.setenv("MINITL_REPORT", str(tmp_path / "r.jsonl"))
    text = report.table([[np.int64(1), 0.123456]], headers=["a", "b"], title="T")
    report.metric("acc", np.float64(0.875))
    report.note("hello")
    assert text == "**T**\n\n| a | b |\n| --- | --- |\n| 1 | 0.1235 |"
    records = report.read_records(tmp_path / "r.jsonl")
    assert [r["kind"] for r in records] == ["table", "metric", "note"]
    assert records[0]["rows"] == [["1", "0.1235"]] and records[0]["lesson"] == "unit"
    assert records[1]["value"] == 0.875
    with pytest.raises(ValueError, match="has 1 cells, but there are 2 headers"):
        report.table([[1]], headers=["a", "b"])


def test_output_dir_follows_minitl_output(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_current_slug", None)
    monkeypatch.setenv("MINITL_OUTPUT", str(tmp_path / "o"))
    assert report.output_dir("my_lesson") == (tmp_path / "o" / "my_lesson").resolve()
    assert (tmp_path / "o" / "my_lesson").is_dir()
    assert report.current_lesson() == "my_lesson"  # figure() saves where output_dir() pointed
    monkeypatch.setenv("MINITL_FAST", "1")
    assert report.fast_mode()
    monkeypatch.setenv("MINITL_FAST", "0")
    assert not report.fast_mode()


# --------------------------------------------------------------------------- the tour


def test_tour_reports_every_lesson_and_fails_when_one_fails(lesson_dir, tmp_path):
    out = tmp_path / "tour"
    code = lessons.run_tour(out=out, fast=True, html=True, dirs=[lesson_dir])
    assert code == 1
    md = (out / "report.md").read_text()
    assert "2 lessons, 1 passed, 1 failed" in md
    assert "| # | lesson | result | time | CPU time |" in md and "|  | all lessons | 1 of 2 passed |" in md
    assert "## Lesson 1: a demo lesson" in md and "**pass** in" in md
    assert "**Squares**\n\n| i | i squared |\n| --- | --- |\n| 0 | 0 |" in md
    assert "![i squared against i](demo/squares.png)" in md and (out / "demo/squares.png").is_file()
    assert "| n | 3 |" in md and "The demo lesson ran to the end." in md
    assert "## Lesson 2: a lesson that breaks" in md and "**FAIL (exit 1)** in" in md
    assert "**Before the error**" in md  # what it recorded before failing is kept
    assert "IndexError: list index out of range" in md
    html = (out / "report.html").read_text()
    assert "<img src='data:image/png;base64," in html and "FAIL (exit 1)" in html


def test_tour_of_passing_lessons_exits_zero(tmp_path):
    result = cli("tour", "--fast", "--out", str(tmp_path / "tour"),
                 env={"MINITL_LESSONS": str(FIXTURES)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lesson 01 demo: pass in" in result.stdout and ", CPU " in result.stdout
    records = report.read_records(tmp_path / "tour" / "records" / "lesson_01.jsonl")
    assert [r["kind"] for r in records] == ["table", "metric", "figure", "note"]
    assert all(r["lesson"] == "demo" for r in records)


def test_help_is_quick_and_lists_the_commands():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("exercises", "lesson", "tour"):
        assert command in result.stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, minitl.cli; "
                               "print(sorted(m for m in ('matplotlib', 'jupytext', 'torch') "
                               "if m in sys.modules))"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert imported.stdout.strip() == "[]"  # heavy modules load only when a command needs them


# --------------------------------------------------------------------------- figures in prose

STALE = '''\
# %% [markdown]
# # Lesson 3: prose and numbers
#
# Test accuracy climbs to about 88-89% in 2 minutes; the last run measured 0.902.
# Settings are not results: `lr=0.001`, $h = 0.5$, and
#
#     f(x) = min(1, (x / 100)^0.75)
#
# Integers alone (60,000 images, 10 classes, word2vec, 3x3) are not figures.

# %%
print("test accuracy 0.9020 after 12.5 s; 88% of the way")

# %% [markdown]
# The run printed 12.5 seconds and 0.9020; 88% too; but not 0.91 or 3 ms.
'''


def test_figures_in_prose_are_decimals_percentages_and_times():
    figures = lessons.find_figures("about 88-89% in 2 minutes, 0.902, 1.5 %, 0.4ms, 60,000 images, "
                                   "word2vec, v1.2.3, 3x3, 10 classes, 37 s")
    assert [(f.number, f.unit) for f in figures] == [
        ("89", "%"), ("2", "min"), ("0.902", ""), ("1.5", "%"), ("0.4", "ms"), ("37", "s")]


def test_unproduced_figures_names_each_figure_the_run_did_not_print(tmp_path):
    path = tmp_path / "lesson_03_prose.py"
    path.write_text(STALE)
    lesson = Lesson.from_path(path)
    assert [f.text for _, f in lessons.prose_figures(lesson)] == [
        "89%", "2 minutes", "0.902", "12.5 seconds", "0.9020", "88%", "0.91", "3 ms"]
    env = {"MINITL_OUTPUT": str(tmp_path / "out")}
    result = cli("lesson", str(path), env=env)
    assert result.returncode == 0, result.stderr
    # the prose itself is echoed by the runner: it must not count as printed by the run
    assert "0.91" in result.stdout
    assert lessons.unproduced_figures(lesson, result.stdout) == [
        "lesson_03_prose.py:4: 89%", "lesson_03_prose.py:4: 2 minutes",
        "lesson_03_prose.py:15: 0.91", "lesson_03_prose.py:15: 3 ms"]


def test_tour_fails_a_lesson_whose_prose_quotes_a_figure_it_did_not_print(tmp_path):
    folder = tmp_path / "lessons"
    folder.mkdir()
    (folder / "lesson_03_prose.py").write_text(STALE)
    out = tmp_path / "tour"
    assert lessons.run_tour(out=out, fast=True, dirs=[folder]) == 1
    md = (out / "report.md").read_text()
    assert "FAIL (prose quotes figures the run did not print)" in md
    assert "lesson_03_prose.py:15: 0.91" in md


def test_check_yourself_wants_two_or_three_questions_and_the_exercises(tmp_path):
    def problems(ending):
        path = tmp_path / "lesson_04_end.py"
        path.write_text("# %%\nx = 1\n\n# %% [markdown]\n" + "\n".join("# " + l for l in ending.splitlines()))
        return lessons.check_yourself_problems(Lesson.from_path(path))

    good = ("## Check yourself\n\n1. What did the table show,\n   and why?\n2. Which is larger?\n\n"
            "- `a.b`: `minitl exercises check a.b`")
    assert problems(good) == []
    assert problems(good.replace("## Check yourself", "## Exercises")) == [
        "lesson_04_end.py: the last cell is not a markdown cell headed '## Check yourself'"]
    assert problems(good.replace("2. Which is larger?\n", "")) == [
        "lesson_04_end.py: 'Check yourself' asks 1 numbered questions, not 2 or 3"]
    assert problems(good.replace("Which is larger?", "Say which.")) == [
        "lesson_04_end.py: 'Check yourself' item 2 is not a question: 'Say which.'"]
    assert problems(good.split("\n\n- ")[0]) == [
        "lesson_04_end.py: 'Check yourself' lists no exercise as - `id`: `minitl exercises check id`"]


def test_labels_of_a_crowded_scatter_plot_do_not_overlap():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xy = np.random.default_rng(0).normal(size=(20, 2)) * 0.3
    xy[1] = xy[0] + 1e-3  # two points on top of each other
    labels = [f"word{i}" for i in range(20)]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(xy[:, 0], xy[:, 1])
    notes = report.label_points(ax, xy, labels)
    fig.canvas.draw()
    boxes = [n.get_window_extent(fig.canvas.get_renderer()) for n in notes]
    assert [n.get_text() for n in notes] == labels
    assert not [(labels[i], labels[j]) for i in range(20) for j in range(i) if boxes[i].overlaps(boxes[j])]
    plt.close(fig)
