"""Dataset versions: the loader, the chain of trust, and `verify --chain`."""
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from poisonguard.pipelines.outputs.datasets import (
    TRUSTED_SAMPLE_FILE,
    list_versions,
    load_dataset,
    updated_sample,
    verify_chain,
)
from poisonguard.pipelines.core.errors import VerificationError
from poisonguard.pipelines.outputs.signing import sign_folder
from tests.cli_helpers import invoke
from tests.tiny_data import write_tiny_dataset


@pytest.fixture(scope="module")
def chain_template(tmp_path_factory):
    """Two versions of dataset "tiny" published by one watch pass (shared, copied per test)."""
    from poisonguard.pipelines.watch.request import make_request
    from poisonguard.pipelines.watch.watcher import watch

    base = tmp_path_factory.mktemp("chain")
    data = write_tiny_dataset(base / "data")
    data["config"].write_text(data["config"].read_text() + "[watch]\nsettle_seconds = 0\n")
    inbox = base / "inbox"
    inbox.mkdir()
    batch = pd.read_csv(data["batch"], dtype=str)
    for number, rows in enumerate((batch.iloc[:22], batch.iloc[22:]), start=1):
        path = inbox / f"part-{number}.csv"
        rows.to_csv(path, index=False)
        os.utime(path, (1, 1000 * number))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POISONGUARD_HOME", str(base / "state"))
        summary = watch(make_request(str(inbox), dataset="tiny", config=data["config"]))
    assert [r.status for r in summary.results] == ["published", "published"]
    return {"root": base / "state" / "datasets", "keys": base / "state" / "keys", "batch": batch}


@pytest.fixture
def chain(chain_template, tmp_path):
    root = tmp_path / "datasets"
    shutil.copytree(chain_template["root"], root)
    return {"dataset": root / "tiny", "public": chain_template["keys"] / "public.pem",
            "private": chain_template["keys"] / "private.pem", "batch": chain_template["batch"]}


def test_the_loader_returns_every_clean_row_of_the_chain_oldest_first(chain):
    frame = load_dataset(chain["dataset"], public_key=chain["public"])
    first = load_dataset(chain["dataset"] / "v0001", public_key=chain["public"])
    v1 = pd.read_parquet(chain["dataset"] / "v0001" / "clean.parquet")
    v2 = pd.read_parquet(chain["dataset"] / "v0002" / "clean.parquet")
    assert frame["id"].tolist() == v1["id"].tolist() + v2["id"].tolist()
    assert first["id"].tolist() == v1["id"].tolist()
    provenance = json.loads((chain["dataset"] / "v0002" / "provenance.json").read_text())
    assert provenance["chain"]["rows_total"] == len(frame)
    # Every batch row is in exactly one place: the clean rows or a quarantine.
    quarantined = pd.concat([pd.read_parquet(chain["dataset"] / v / "quarantine.parquet") for v in ("v0001", "v0002")])
    assert sorted(frame["id"].tolist() + quarantined["id"].tolist()) == sorted(chain["batch"]["id"])


def test_each_version_names_its_parent_and_the_chain_verifies(chain):
    versions = verify_chain(chain["dataset"], chain["public"])
    assert [v.name for v in versions] == ["v0001", "v0002"]
    assert versions[0].chain["parent"] is None
    assert versions[1].chain["parent"]["signature_sha256"] == versions[0].signature_sha256
    assert [p["version"] for p in versions[1].chain["parts"]] == ["v0001", "v0002"]
    result = invoke("verify", chain["dataset"] / "v0002", "--public-key", chain["public"], "--chain")
    assert result.exit_code == 0, result.output
    assert "chain verified: 2 version(s)" in result.output


def test_a_tampered_parent_fails_the_chain_and_the_loader(chain):
    clean = chain["dataset"] / "v0001" / "clean.parquet"
    data = bytearray(clean.read_bytes())
    data[len(data) // 2] ^= 1
    clean.write_bytes(bytes(data))
    # The version alone still verifies; its chain does not.
    alone = invoke("verify", chain["dataset"] / "v0002", "--public-key", chain["public"])
    assert alone.exit_code == 0, alone.output
    result = invoke("verify", chain["dataset"] / "v0002", "--public-key", chain["public"], "--chain")
    assert result.exit_code == 4
    assert "v0001" in result.output and "clean.parquet changed" in result.output
    with pytest.raises(VerificationError, match="clean.parquet changed"):
        load_dataset(chain["dataset"], public_key=chain["public"])


def test_a_parent_replaced_and_re_signed_breaks_the_link(chain):
    parent = chain["dataset"] / "v0001"
    clean = pd.read_parquet(parent / "clean.parquet")
    clean.iloc[:1].to_parquet(parent / "clean.parquet", index=False)
    sign_folder(parent, chain["private"])  # a valid signature, but not the one its child named
    with pytest.raises(VerificationError, match="the parent was replaced"):
        verify_chain(chain["dataset"], chain["public"])


def test_a_missing_or_misplaced_version_is_named(chain):
    shutil.copytree(chain["dataset"] / "v0002", chain["dataset"] / "v0003")
    with pytest.raises(VerificationError, match="says it is version v0002, not v0003"):
        verify_chain(chain["dataset"], chain["public"])
    shutil.rmtree(chain["dataset"] / "v0003")
    shutil.rmtree(chain["dataset"] / "v0001")
    with pytest.raises(VerificationError, match="parent v0001 is missing"):
        load_dataset(chain["dataset"], public_key=chain["public"])
    assert [p.name for p in list_versions(chain["dataset"])] == ["v0002"]


def test_the_trusted_sample_is_signed_and_bounded(chain):
    provenance = json.loads((chain["dataset"] / "v0002" / "provenance.json").read_text())
    assert TRUSTED_SAMPLE_FILE in provenance["outputs"]
    assert provenance["chain"]["trusted_sample"]["rows_behind"] == provenance["chain"]["rows_total"]
    assert "v0001" in provenance["chain"]["trusted"]["description"]


def test_the_sample_keeps_each_clean_row_with_its_share():
    previous = pd.DataFrame({"n": range(10)})
    new = pd.DataFrame({"n": range(100, 110)})
    sample = updated_sample(previous, 1000, new, size=10, seed=0)
    assert len(sample) == 10
    # 10 new rows against 1000 behind the old sample: about 0.1 of them stay.
    assert (sample["n"] >= 100).sum() <= 2
    assert updated_sample(None, 0, new, size=50, seed=0)["n"].tolist() == new["n"].tolist()
    assert len(updated_sample(previous, 10, new.iloc[:0], size=50, seed=0)) == 10


def test_a_folder_without_versions_is_an_input_error(tmp_path):
    result = invoke("verify", tmp_path, "--chain", "--public-key", tmp_path / "none.pem")
    assert result.exit_code == 2 and "neither a dataset version" in result.output
    assert list_versions(Path(tmp_path / "nothing")) == []
