"""Every lesson runs to the end in fast mode (`minitl lesson N --fast`), in its own process."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "lessons").glob("lesson_[0-9][0-9]_*.py"))


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_in_fast_mode(path, tmp_path):
    number = int(re.match(r"lesson_(\d+)_", path.name).group(1))
    env = dict(os.environ, MINITL_OUTPUT=str(tmp_path), MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "minitl.cli", "lesson", str(number), "--fast"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "End of Lesson" in result.stdout
    assert list(tmp_path.rglob("*.png")) or number == 12, "the lesson saved no figure"
