"""`poisonguard emit`: a new signed clean dataset of kept and released rows, never a rejected one."""
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from poisonguard.pipelines.outputs.signed_folder import write_signed_folder
from poisonguard.pipelines.outputs.signing import verify_folder
from tests.cli_helpers import entry_id, invoke
from tests.tiny_data import BROKEN_NUMBER, FAR_AWAY, FLIPPED

LAYOUT = ["clean.parquet", "provenance.json", "quarantine.parquet", "report.html", "signature.sig"]


def decide(verb, row_id, note, reviewer="ann"):
    result = invoke("review", verb, entry_id(row_id), "--note", note, "--reviewer", reviewer)
    assert result.exit_code == 0, result.output
    return entry_id(row_id)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_signing_command():
    beside_python = Path(sys.executable).with_name("model_signing")
    return str(beside_python) if beside_python.exists() else shutil.which("model_signing")


def test_emit_adds_released_rows_and_never_a_rejected_one(tiny_run, tmp_path, isolated_state):
    released = decide("release", FAR_AWAY, "a rare but real point")
    rejected = decide("reject", FLIPPED[0], "label flipped", reviewer="bob")
    out = tmp_path / "emitted"
    result = invoke("emit", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"built on run {tiny_run['run_id'][:8]} (the latest succeeded run)" in result.output
    assert sorted(p.name for p in out.iterdir()) == LAYOUT
    assert not list(tmp_path.glob(".emitted.partial-*"))

    before = pd.read_parquet(tiny_run["out"] / "clean.parquet")
    clean = pd.read_parquet(out / "clean.parquet")
    assert sorted(clean["id"]) == sorted([*before["id"], FAR_AWAY])
    assert clean["id"].is_unique and FLIPPED[0] not in set(clean["id"])
    assert clean.dtypes.to_dict() == before.dtypes.to_dict()
    far = clean.set_index("id").loc[FAR_AWAY]
    assert (far["x"], far["y"], far["label"]) == (60.0, -45.0, "red")

    quarantine = pd.read_parquet(out / "quarantine.parquet").set_index("id")
    assert quarantine.loc[FLIPPED[0], "poisonguard_status"] == "rejected"
    assert quarantine.loc[FLIPPED[0], "poisonguard_entry_id"] == rejected
    assert FAR_AWAY not in quarantine.index and set(quarantine["poisonguard_status"]) == {"pending", "rejected"}
    assert "label.trusted_model" in list(quarantine.loc[FLIPPED[0], "poisonguard_checks"])
    assert len(clean) + len(quarantine) == 45 and not set(clean["id"]) & set(quarantine.index)

    public = isolated_state / "keys" / "public.pem"
    assert set(verify_folder(out, public).files) == set(LAYOUT) - {"signature.sig"}
    checked = subprocess.run(
        [model_signing_command(), "verify", "key", str(out), "--signature", str(out / "signature.sig"),
         "--public_key", str(public), "--no-ignore-git-paths"],
        capture_output=True, text=True, timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    provenance = json.loads((out / "provenance.json").read_text())
    assert [(d["entry_id"], d["row_id"], d["status"], d["reviewer"], d["note"]) for d in provenance["decisions"]] == [
        (released, FAR_AWAY, "released", "ann", "a rare but real point"),
        (rejected, FLIPPED[0], "rejected", "bob", "label flipped"),
    ]
    assert all(d["decided_at"].endswith("+00:00") for d in provenance["decisions"])
    assert provenance["supersedes"] == [{
        "run_id": tiny_run["run_id"],
        "folder": str(tiny_run["out"]),
        "verified_with": str(public),
        "provenance_sha256": sha256(tiny_run["out"] / "provenance.json"),
        "signature_sha256": sha256(tiny_run["out"] / "signature.sig"),
    }]
    assert [run["id"] for run in provenance["runs"]] == [tiny_run["run_id"]]
    assert provenance["counts"] == {
        "kept_from_runs": len(before), "released": 1, "clean": len(before) + 1,
        "pending": len(quarantine) - 1, "rejected": 1, "decisions": 2,
    }
    assert provenance["tool"]["name"] == "poisonguard" and provenance["outputs"]["clean.parquet"]["sha256"] == sha256(
        out / "clean.parquet"
    )
    report = (out / "report.html").read_text()
    assert FAR_AWAY in report and "label flipped" in report and "<script" not in report


def test_emit_by_run_prefix_or_dataset(tiny_run, tmp_path):
    by_prefix = invoke("emit", "--out", tmp_path / "a", "--run", tiny_run["run_id"][:8])
    assert by_prefix.exit_code == 0, by_prefix.output
    assert "chosen with --run" in by_prefix.output
    by_dataset = invoke("emit", "--out", tmp_path / "b", "--dataset", "tiny")
    assert by_dataset.exit_code == 0 and "the latest succeeded run of dataset 'tiny'" in by_dataset.output
    other = invoke("emit", "--out", tmp_path / "c", "--dataset", "other")
    assert other.exit_code == 2 and "no succeeded run of dataset 'other'" in other.output
    unknown = invoke("emit", "--out", tmp_path / "c", "--run", "ffff")
    assert unknown.exit_code == 2 and "no run 'ffff'" in unknown.output
    assert not (tmp_path / "c").exists()


def test_emit_refuses_a_tampered_run_output(tiny_run, tmp_path):
    clean = tiny_run["out"] / "clean.parquet"
    frame = pd.read_parquet(clean)
    frame.loc[0, "label"] = "blue" if frame.loc[0, "label"] != "blue" else "red"
    frame.to_parquet(clean, index=False)
    result = invoke("emit", "--out", tmp_path / "emitted")
    assert result.exit_code == 4
    assert str(tiny_run["out"]) in result.output and "clean.parquet changed since it was signed" in result.output
    assert "will not build on it" in result.output
    assert not (tmp_path / "emitted").exists() and not list(tmp_path.glob(".emitted.partial-*"))


def test_emit_refuses_a_released_row_the_run_never_signed(tiny_run, tmp_path):
    far = decide("release", FAR_AWAY, "fine")
    with sqlite3.connect(tiny_run["database"]) as connection:
        row = json.loads(connection.execute("SELECT row_json FROM quarantine WHERE id = ?", (far,)).fetchone()[0])
        row["label"] = "green"
        connection.execute("UPDATE quarantine SET row_json = ? WHERE id = ?", (json.dumps(row), far))
    connection.close()
    result = invoke("emit", "--out", tmp_path / "emitted")
    assert result.exit_code == 4
    assert f"entry {far}" in result.output and "may have been altered" in result.output
    assert not (tmp_path / "emitted").exists()


def test_a_released_value_that_does_not_fit_its_column_is_a_clear_error(tiny_run, tmp_path):
    broken = decide("release", BROKEN_NUMBER, "looks fine to me")
    result = invoke("emit", "--out", tmp_path / "emitted")
    assert result.exit_code == 2
    assert f"entry {broken} (row '{BROKEN_NUMBER}'" in result.output
    assert "x = 'oops' cannot be stored in x (float64)" in result.output
    assert f"reject it instead: poisonguard review reject {broken} --force" in result.output
    assert not (tmp_path / "emitted").exists() and not list(tmp_path.glob(".emitted.partial-*"))
    # Rejecting it, as told, makes emit work.
    assert invoke("review", "reject", broken, "--force", "--note", "not a number").exit_code == 0
    assert invoke("emit", "--out", tmp_path / "emitted").exit_code == 0


def test_emit_with_only_the_private_key_verifies_the_runs_with_its_public_half(tiny_run, tmp_path, isolated_state):
    keys = tmp_path / "keys"
    shutil.copytree(isolated_state / "keys", keys)
    shutil.rmtree(isolated_state / "keys")  # no state-folder key to fall back on
    result = invoke("emit", "--out", tmp_path / "emitted", "--key", keys / "private.pem")
    assert result.exit_code == 0, result.output
    assert verify_folder(tmp_path / "emitted", keys / "public.pem")
    provenance = json.loads((tmp_path / "emitted" / "provenance.json").read_text())
    assert provenance["supersedes"][0]["verified_with"] == f"the public key of {keys / 'private.pem'}"
    assert not (isolated_state / "keys").exists()  # nothing was made in the state folder


def test_the_output_folder_must_not_exist(tiny_run, tmp_path):
    (tmp_path / "emitted").mkdir()
    result = invoke("emit", "--out", tmp_path / "emitted")
    assert result.exit_code == 2 and "output folder already exists" in result.output
    assert list((tmp_path / "emitted").iterdir()) == []


def test_emit_without_a_store_says_to_run_first(tmp_path):
    result = invoke("emit", "--out", tmp_path / "emitted")
    assert result.exit_code == 2 and "run `poisonguard run` first" in result.output


def test_a_failed_step_leaves_no_folder(tmp_path, isolated_state):
    from poisonguard.pipelines.outputs.signing import ensure_state_key

    key, _ = ensure_state_key(isolated_state)

    def write(folder):
        (folder / "data.txt").write_text("rows\n")

    def refuse(folder):
        assert (folder / "signature.sig").exists()  # signed before the caller's last step
        raise RuntimeError("store is down")

    parent = tmp_path / "outputs"
    with pytest.raises(RuntimeError, match="store is down"):
        write_signed_folder(parent / "out", key, write, before_reveal=refuse)
    assert list(parent.iterdir()) == []
    written = write_signed_folder(parent / "out", key, write)
    assert [p.name for p in parent.iterdir()] == ["out"]
    assert verify_folder(written, isolated_state / "keys" / "public.pem").files.keys() == {"data.txt"}
