"""pytest plumbing shared by the whole suite.

* ``@pytest.mark.exercise("autograd.matmul_backward")`` ties a test to an exercise, and
  ``pytest --exercise autograd.matmul_backward`` runs only the tests of that exercise
  (``minitl exercises check ID`` is a shortcut for it).
* The tests import the minitl that sits next to them: in a student copy made by
  ``minitl exercises export``, that is the copy with the stubs, never an installed minitl.
  The header line "minitl under test: ..." shows which one was imported.
* Fixtures: ``rng`` (a seeded NumPy generator). Every test writes lesson output into a
  temporary folder, never into the working tree.
* A test of an exercise runs on the reference code, with ``tl.fastpath`` off: it checks what
  the student writes, never the fast path beside it (tests/test_fastpath.py proves those equal).

Kept light on purpose: nothing heavy (torch, matplotlib, minitl itself) is imported here, so
collecting one test file stays fast.
"""
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Put this project first on sys.path so `import minitl` finds the package next to the tests,
# whether or not (and wherever) minitl is pip-installed.
if str(PROJECT_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(PROJECT_ROOT))


def pytest_addoption(parser):
    parser.addoption(
        "--exercise", action="append", default=[], metavar="ID",
        help="run only the tests marked @pytest.mark.exercise(ID); may be given several times")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "exercise(id, ...): the test checks the solution of exercise `id` "
        "(see `minitl exercises list`)")


def pytest_report_header(config):
    # find_spec locates the package without running it, so a broken minitl still shows here.
    spec = importlib.util.find_spec("minitl")
    return f"minitl under test: {spec.origin if spec else 'not importable'}"


def exercise_ids(item) -> set:
    """The exercise ids of every `exercise` mark on a test (function, class or module level)."""
    ids = set()
    for mark in item.iter_markers(name="exercise"):
        if not mark.args or not all(isinstance(a, str) for a in mark.args):
            raise pytest.UsageError(
                f"{item.nodeid}: write @pytest.mark.exercise('some.id'), got args {mark.args!r}")
        ids.update(mark.args)
    return ids


def pytest_collection_modifyitems(config, items):
    wanted = set(config.getoption("exercise"))
    if not wanted:
        return
    selected, deselected = [], []
    for item in items:
        (selected if exercise_ids(item) & wanted else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed: a test's random inputs are the same on every run."""
    return np.random.default_rng(0)


@pytest.fixture(params=[1, 3], ids=["1 thread", "3 threads"])
def threads(request, monkeypatch):
    """The fast paths on 1 or on 3 threads, with tiny blocks and no minimum job size, so that
    every small input of a test is split into many blocks (tests/test_fastpath.py)."""
    from minitl.fastpath import adam as fast_adam
    from minitl.fastpath import parallel

    monkeypatch.setattr(parallel, "BLOCK_ELEMENTS", 97)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS_PER_THREAD", 1)
    monkeypatch.setattr(fast_adam, "SLICE", 101)
    before = parallel.get_num_threads()
    parallel.set_num_threads(request.param)
    yield request.param
    parallel.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _lesson_output_in_tmp(tmp_path_factory):
    """Send lesson figures to a temporary folder and record no tour report during tests."""
    saved = {k: os.environ.get(k) for k in ("MINITL_OUTPUT", "MINITL_REPORT", "MPLBACKEND")}
    os.environ["MINITL_OUTPUT"] = str(tmp_path_factory.mktemp("minitl_output"))
    os.environ.pop("MINITL_REPORT", None)
    os.environ["MPLBACKEND"] = "Agg"  # figures render to files; no display needed
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _exercise_tests_run_the_reference(request):
    """Every test marked @pytest.mark.exercise runs inside ``tl.fastpath.use(False)``."""
    if request.node.get_closest_marker("exercise") is None:
        yield
        return
    import minitl  # here, not at the top: collecting a test file stays light

    fastpath = getattr(minitl, "fastpath", None)
    if fastpath is None:  # a project without the switch (the exercise tooling's test projects)
        yield
        return
    with fastpath.use(False):
        yield
