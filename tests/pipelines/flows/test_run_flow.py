"""One end-to-end run through Prefect's test harness: run, verify, tamper, verify fails."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from poisonguard.pipelines.cli.app import app
from tests.tiny_data import POISONED, write_tiny_dataset


@pytest.fixture(scope="module")
def prefect_harness():
    with prefect_test_harness(server_startup_timeout=180):
        yield


def model_signing_command() -> str:
    beside_python = Path(sys.executable).with_name("model_signing")
    return str(beside_python) if beside_python.exists() else shutil.which("model_signing")


@pytest.mark.slow
def test_run_verify_tamper_through_prefect(prefect_harness, tmp_path):
    runner = CliRunner()
    data = write_tiny_dataset(tmp_path / "data")
    keys = tmp_path / "keys"
    assert runner.invoke(app, ["keygen", "--out", str(keys)]).exit_code == 0
    out = tmp_path / "runs" / "first"
    result = runner.invoke(
        app,
        ["run", str(data["batch"]), "--label", "label", "--id", "id", "--reference", str(data["reference"]),
         "--key", str(keys / "private.pem"), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "Prefect start-up" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "clean.parquet", "provenance.json", "quarantine.parquet", "report.html", "signature.sig",
    ]
    import pandas as pd

    assert set(POISONED) <= set(pd.read_parquet(out / "quarantine.parquet")["id"])

    verified = runner.invoke(app, ["verify", str(out), "--public-key", str(keys / "public.pem")])
    assert verified.exit_code == 0, verified.output

    # The OpenSSF tool itself accepts the signature.
    openssf = subprocess.run(
        [model_signing_command(), "verify", "key", str(out), "--signature", str(out / "signature.sig"),
         "--public_key", str(keys / "public.pem"), "--no-ignore-git-paths"],
        capture_output=True, text=True, timeout=300,
    )
    assert openssf.returncode == 0, openssf.stdout + openssf.stderr

    data_bytes = bytearray((out / "clean.parquet").read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0x01
    (out / "clean.parquet").write_bytes(bytes(data_bytes))
    tampered = runner.invoke(app, ["verify", str(out), "--public-key", str(keys / "public.pem")])
    assert tampered.exit_code == 4
    assert "clean.parquet changed" in tampered.output
