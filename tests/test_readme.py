"""The README's walkthrough works as written: every block marked for it, in order, on a fresh folder.

A block is marked by a ``<!-- walkthrough -->`` line right before it. Shell
blocks run in one bash session (so ``export`` carries over, as in the
reader's terminal), Python blocks with the project's interpreter; both in a
new folder where ``data_samples`` is the repository's, with the virtualenv's
commands first on the PATH (what ``source .venv/bin/activate`` does).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- walkthrough -->"

pytestmark = pytest.mark.slow(seconds=90)


def walkthrough_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every marked fenced block, in order."""
    return [(language, code) for language, code in re.findall(
        re.escape(MARKER) + r"\n```(\w+)\n(.*?)\n```", text, flags=re.DOTALL)]


def test_the_readme_marks_its_walkthrough():
    blocks = walkthrough_blocks((REPO / "README.md").read_text())
    assert [language for language, _ in blocks] == ["sh", "sh", "python", "python"]


def test_the_walkthrough_runs_as_written(tmp_path):
    (tmp_path / "data_samples").symlink_to(REPO / "data_samples")
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    environment.pop("POISONGUARD_HOME", None)  # the walkthrough sets its own
    shell, python = [], []
    for language, code in walkthrough_blocks((REPO / "README.md").read_text()):
        if language == "sh":
            # Activation is what the PATH above already did.
            shell.append("\n".join(line for line in code.splitlines() if not line.startswith("source ")))
        else:
            python.append(code)
    script = "set -euo pipefail\n" + "\n".join(shell) + "\nenv | grep ^POISONGUARD_HOME= > tour.env\n"
    ran = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True,
                         timeout=900)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    state = (tmp_path / "tour.env").read_text().strip().split("=", 1)[1]
    for code in python:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**environment, "POISONGUARD_HOME": state},
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    # The story's ending: the emitted dataset holds the released rows, never a rejected one.
    clean = set(pd.read_parquet(tmp_path / "runs" / "tour-reviewed" / "clean.parquet")["row_id"])
    assert {"pen-0060", "pen-0002"} <= clean and "pen-0003" not in clean
    provenance = json.loads((tmp_path / "runs" / "tour-reviewed" / "provenance.json").read_text())
    released = {d["row_id"] for d in provenance["decisions"] if d["status"] == "released"}
    assert released == {"pen-0060", "pen-0002"}
    assert (tmp_path / "expectations" / "suites" / "penguins.json").is_file()
    assert (tmp_path / "runs" / "from-python" / "signature.sig").is_file()
