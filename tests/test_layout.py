"""The repository installs as one package, `poisonguard`, whose layers the import contracts keep."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
BARE = {"pipelines", "detectors", "expectations"}
SKIPPED_FOLDERS = {".venv", ".git", "build", "dist", "__pycache__", ".hypothesis", ".pytest_cache"}


def _python_files():
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS and not name.endswith(".egg-info")]
        for name in files:
            if name.endswith(".py"):
                yield Path(folder) / name


def _package_folders() -> set[str]:
    names = {"poisonguard"}
    for top in sorted(BARE):
        for folder, subfolders, files in os.walk(REPO / top):
            subfolders[:] = [name for name in subfolders if name != "__pycache__"]
            if "__init__.py" in files:
                relative = Path(folder).relative_to(REPO)
                names.add(".".join(("poisonguard", *relative.parts)))
    return names


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert listed == _package_folders()


def test_no_code_imports_the_bare_package_names():
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in names if name.split(".")[0] in BARE]
    assert offenders == [], "import poisonguard.<name>, never the bare folder name"


def test_the_import_contracts_hold():
    """Layers, no cycles, and which package may import SQLAlchemy, Prefect, Typer/rich, FastAPI."""
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_outside_the_checkout_only_poisonguard_imports(tmp_path):
    script = (
        "import importlib, poisonguard\n"
        "for name in ('pipelines', 'detectors', 'expectations'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    raise SystemExit(f'{name} is importable')\n"
        "from poisonguard import load_dataset, run, verify\n"
        "print(poisonguard.__version__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip()


@pytest.mark.slow
def test_the_wheel_holds_one_top_level_package_with_its_data(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = tmp_path.glob("poisonguard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [top_level] = [name for name in names if name.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["poisonguard"]
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"poisonguard"}
    for expected in (
        "poisonguard/__init__.py",
        "poisonguard/pipelines/outputs/templates/report.html",
        "poisonguard/pipelines/web/templates/entry.html",
        "poisonguard/pipelines/store/migrations/env.py",
        "poisonguard/pipelines/store/migrations/versions/0001_baseline.py",
    ):
        assert expected in names
    assert not [name for name in names if name.startswith("poisonguard/tests/") or "/benchmarks/" in name]
