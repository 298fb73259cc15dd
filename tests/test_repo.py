"""The repository keeps its promises: CI runs README's test command, setup.py is sound."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    tests = [c for c in commands if "pytest" in c]
    assert tests, "README.md names no test command"
    return tests[0].split("&&")[-1].strip()


def test_ci_runs_exactly_readmes_test_command():
    command = readme_test_command()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    assert ci_lines[-1] == command, f".ci/run ends with {ci_lines[-1]!r}, README says {command!r}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "dataset-fashion-mnist dict-gcide" in ci and '.[dev,oracle]' in ci


def test_setup_declares_the_console_script_and_packages():
    setup = (ROOT / "setup.py").read_text()
    assert "minitl = minitl.cli:main" in setup
    assert '"minitl.kernels"' in setup and '"minitl.lessons"' in setup and 'python_requires=">=3.10"' in setup


def test_the_install_claims_only_the_minitl_import_name():
    """kernels/ and lessons/ install as minitl.kernels and minitl.lessons: a package on PyPI
    is called `kernels`, and minitl must not shadow it."""
    import importlib.metadata

    import minitl
    from minitl import kernels, lessons
    top_level = importlib.metadata.distribution("minitl").read_text("top_level.txt").split()
    assert top_level == ["minitl"]
    assert Path(kernels.__file__).parent.name == "kernels" and kernels.__name__ == "minitl.kernels"
    assert lessons.__name__ == "minitl.lessons"
    assert minitl.__name__ == "minitl"
