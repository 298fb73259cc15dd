"""Every lesson runs to the end in fast mode (`minitl lesson N --fast`), in its own process; its
prose quotes no figure its run did not print; it ends with "## Check yourself" (the rules are
in the docstring of minitl/lesson_runner.py)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minitl import lesson_runner

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "lessons").glob("lesson_[0-9][0-9]_*.py"))
# Lessons being rewritten elsewhere to meet the two rules below; an entry goes when its branch
# merges (the lead's merge checklist names it).
NOT_YET = {}


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_in_fast_mode_and_prints_every_figure_its_prose_quotes(path, tmp_path):
    number = int(re.match(r"lesson_(\d+)_", path.name).group(1))
    env = dict(os.environ, MINITL_OUTPUT=str(tmp_path), MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "minitl.cli", "lesson", str(number), "--fast"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "End of Lesson" in result.stdout
    assert list(tmp_path.rglob("*.png")), "the lesson saved no figure"
    if path.stem in NOT_YET:
        pytest.skip(f"prose figures not checked yet: {NOT_YET[path.stem]}")
    missing = lesson_runner.unproduced_figures(lesson_runner.Lesson.from_path(path), result.stdout)
    assert not missing, ("the prose quotes figures this run did not print (print them from a code "
                         "cell, or drop them):\n" + "\n".join(missing))


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_ends_with_check_yourself(path):
    if path.stem in NOT_YET:
        pytest.skip(NOT_YET[path.stem])
    problems = lesson_runner.check_yourself_problems(lesson_runner.Lesson.from_path(path))
    assert not problems, "\n".join(problems)
