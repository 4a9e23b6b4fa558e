"""`poisonguard watch`: an inbox processed once per batch, crash-safe, into a chain of signed versions."""
import json
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

import pandas as pd
import pytest

from poisonguard.pipelines.cli.watch import hide_expected_failures
from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.watch import watcher as watch_module
from poisonguard.pipelines.outputs.datasets import list_versions, load_dataset, staging_folders, verify_chain
from poisonguard.pipelines.watch.request import make_request
from poisonguard.pipelines.watch.watcher import watch
from tests import forked
from tests.cli_helpers import invoke
from tests.watch_helpers import assert_consistent, drop, one_pass, store_rows, watch_setup


@pytest.fixture
def setup(tmp_path, isolated_state):
    return watch_setup(tmp_path, isolated_state)


def test_batches_oldest_first_duplicates_skipped_and_a_changed_file_is_new(setup):
    batch, inbox = setup["batch"], setup["inbox"]
    drop(inbox, "z-first.csv", batch.iloc[:15], 1000)
    drop(inbox, "a-second.csv", batch.iloc[15:30], 2000)
    summary = one_pass(setup)
    assert [(r.name, r.status, r.version) for r in summary.results] == [
        ("z-first.csv", "published", "v0001"), ("a-second.csv", "published", "v0002"),
    ]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["a-second.csv", "z-first.csv"]

    # The same bytes under another name, and a new file re-using a processed name.
    shutil.copy(inbox / "processed" / "z-first.csv", inbox / "again.csv")
    os.utime(inbox / "again.csv", (2500, 2500))
    changed = batch.iloc[30:].copy()
    drop(inbox, "a-second.csv", changed, 3000)
    summary = one_pass(setup)
    assert [(r.name, r.status, r.version) for r in summary.results] == [
        ("again.csv", "duplicate", "v0001"), ("a-second.csv", "published", "v0003"),
    ]
    assert "already published as v0001 (first seen as z-first.csv)" in summary.results[0].message
    moved = sorted(p.name for p in (inbox / "processed").iterdir())
    digest = summary.results[1].digest
    assert moved == sorted(["a-second.csv", f"a-second.{digest[:12]}.csv", "again.csv", "z-first.csv"])

    assert one_pass(setup).results == []
    assert_consistent(setup, files=3)
    assert store_rows(setup, "SELECT count(*) FROM runs") == [(3,)]  # the duplicate was never run


def test_a_dataset_written_with_semicolons_and_decimal_commas_is_watched_as_written(setup):
    # The configured reference is read again for each batch's trusted data, in the dataset's CSV format.
    config, inbox = setup["config"], setup["inbox"]
    reference = config.parent / "reference.csv"
    european = pd.read_csv(reference, dtype=str)
    european[["x", "y"]] = european[["x", "y"]].apply(lambda column: column.str.replace(".", ",", regex=False))
    european.to_csv(reference, sep=";", index=False)
    config.write_text(config.read_text().replace('reference = "reference.csv"\n',
                                                 'reference = "reference.csv"\nseparator = ";"\ndecimal = ","\n'))
    batch = setup["batch"].copy()
    batch[["x", "y"]] = batch[["x", "y"]].apply(lambda column: column.str.replace(".", ",", regex=False))
    for name, rows, at in (("first.csv", batch.iloc[:25], 1000), ("second.csv", batch.iloc[25:], 2000)):
        rows.to_csv(inbox / name, sep=";", index=False)
        os.utime(inbox / name, (at, at))
    summary = one_pass(setup)
    assert [(r.name, r.status) for r in summary.results] == [("first.csv", "published"), ("second.csv", "published")]
    assert_consistent(setup, files=2)
    signed = load_dataset(setup["root"], public_key=setup["public"])
    assert signed["x"].dtype == float and signed["x"].notna().all()


def test_a_drifted_batch_is_rejected_whole_and_the_chain_goes_on(setup):
    batch, inbox = setup["batch"], setup["inbox"]
    drop(inbox, "good.csv", batch.iloc[:25], 1000)
    drifted = batch.iloc[25:].copy()
    numbers = pd.to_numeric(drifted["x"], errors="coerce")
    drifted["x"] = (numbers * 3 + 10).astype(object).where(numbers.notna(), drifted["x"])
    drop(inbox, "drifted.csv", drifted, 2000)
    drop(inbox, "later.csv", batch.iloc[25:], 3000)
    summary = one_pass(setup)
    results = {r.name: r for r in summary.results}
    assert [r.status for r in summary.results] == ["published", "rejected", "published"]
    rejected = results["drifted.csv"]
    assert "batch.drift: x: KS statistic" in rejected.message
    assert rejected.version is None and Path(rejected.report).is_file()
    assert "Batch-level checks" in Path(rejected.report).read_text()
    assert [p.name for p in (inbox / "rejected").iterdir()] == ["drifted.csv"]
    assert results["later.csv"].version == "v0002"
    assert verify_chain(setup["root"], setup["public"])[-1].chain["parent"]["version"] == "v0001"
    assert store_rows(setup, "SELECT status FROM watch_batches ORDER BY id") == [("published",), ("rejected",), ("published",)]


def test_an_unreadable_batch_is_rejected_and_a_failing_one_given_up_after_max_attempts(setup, monkeypatch):
    inbox = setup["inbox"]
    drop(inbox, "no-label.csv", setup["batch"].drop(columns=["label"]), 1000)
    summary = one_pass(setup)
    assert summary.results[0].status == "rejected" and "no label column 'label'" in summary.results[0].message
    # Named as it sat in the inbox, not as the spool copy the run read.
    assert summary.results[0].message.startswith(f"{inbox}/no-label.csv: "), summary.results[0].message
    assert store_rows(setup, f"SELECT status FROM runs WHERE id = '{summary.results[0].run_id}'") == [("rejected",)]
    assert (inbox / "rejected" / "no-label.csv").exists()

    setup["config"].write_text(setup["config"].read_text() + "max_attempts = 1\n")
    drop(inbox, "crashes.csv", setup["batch"], 2000)
    monkeypatch.setattr(watch_module, "execute", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk on fire")))
    with pytest.raises(RuntimeError, match="disk on fire"):
        one_pass(setup)
    assert (inbox / "crashes.csv").exists()
    summary = one_pass(setup)
    assert summary.results[0].status == "failed" and "disk on fire" in summary.results[0].message
    assert (inbox / "rejected" / "crashes.csv").exists()


def _fail_second_batch(monkeypatch, point):
    """Raise an error at ``point`` while the second batch is processed."""
    seen = []

    def checkpoint(step):
        if step == "fetched":
            seen.append(step)
        if len(seen) == 2 and step == point:
            raise RuntimeError(f"crash at {step}")

    if point == "sign":
        from poisonguard.pipelines.outputs import publish
        from poisonguard.pipelines.outputs import signing

        def sign(folder, key, signature_name="signature.sig"):
            if Path(folder).name.startswith(".v0002"):
                raise RuntimeError("crash while signing")
            return signing.sign_folder(folder, key, signature_name=signature_name)

        monkeypatch.setattr(publish, "sign_folder", sign)
    elif point == "publish":
        real = watch_module.run_stage_directly

        def stage(name, function, *args, **options):
            result = real(name, function, *args, **options)
            if name == "publish" and result.out.name == "v0002":
                raise RuntimeError("crash right after the version was revealed")
            return result

        return {"run_stage": stage}
    else:
        monkeypatch.setattr(watch_module, "checkpoint", checkpoint)
    return {}


@pytest.mark.parametrize("point", ["claimed", "sign", "publish", "processed", "recorded", "moved"])
def test_a_crash_between_steps_then_a_rerun_loses_nothing_and_repeats_nothing(setup, point):
    batch, inbox = setup["batch"], setup["inbox"]
    drop(inbox, "one.csv", batch.iloc[:22], 1000)
    drop(inbox, "two.csv", batch.iloc[22:], 2000)
    with pytest.MonkeyPatch.context() as patch:
        options = _fail_second_batch(patch, point)
        with pytest.raises(RuntimeError, match="crash"):
            one_pass(setup, **options)
    # Whatever exists is whole: every visible version verifies.
    assert verify_chain(setup["root"], setup["public"])
    rerun = one_pass(setup)
    expected = {
        "claimed": [("two.csv", "published")],  # nothing was done: processed again
        "sign": [("two.csv", "published")],  # the staging folder was removed: processed again
        "publish": [("two.csv", "duplicate")],  # revealed: recovery records it, the file is moved
        "processed": [("two.csv", "duplicate")],
        "recorded": [("two.csv", "duplicate")],  # recorded: only the move was left
        "moved": [],  # everything was done
    }[point]
    assert [(r.name, r.status) for r in rerun.results] == expected
    assert_consistent(setup, files=2)


def _watch_and_die_at(setup, point: str) -> None:
    """One watch pass that exits at once (no cleanup, like a crash) at ``point``."""
    from poisonguard.pipelines.outputs import publish

    if point == "signing":  # the second version's staging folder is signed, then the process dies
        real_sign = publish.sign_folder

        def sign(folder, key, signature_name="signature.sig"):
            real_sign(folder, key, signature_name=signature_name)
            if ".v0002" in str(folder):
                os._exit(9)
        publish.sign_folder = sign
    else:  # the second batch's quarantined rows are committed, its folder not yet renamed
        real_add, calls = publish.QuarantineStore.add_quarantined, []

        def add(self, *args, **kwargs):
            stored = real_add(self, *args, **kwargs)
            calls.append(stored)
            if len(calls) == 2:
                os._exit(9)
            return stored
        publish.QuarantineStore.add_quarantined = add
    one_pass(setup)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["signing", "before-reveal"])
def test_a_killed_watcher_leaves_a_state_the_next_pass_finishes(setup, point, tmp_path):
    batch, inbox = setup["batch"], setup["inbox"]
    drop(inbox, "one.csv", batch.iloc[:22], 1000)
    drop(inbox, "two.csv", batch.iloc[22:], 2000)
    # A process of its own (forked, so it starts warm), which dies without cleaning up.
    code, stderr = forked.wait(forked.fork(lambda: _watch_and_die_at(setup, point), tmp_path / "killed.err"))
    assert code == 9, stderr
    assert [v.name for v in list_versions(setup["root"])] == ["v0001"]
    if point == "signing":
        assert len(staging_folders(setup["root"])) == 1  # signed but never revealed
    else:
        assert store_rows(setup, "SELECT count(*) FROM quarantine q JOIN runs r ON r.id = q.run_id "
                                 "WHERE r.status = 'running'")[0][0] > 0
    # The dead process still "holds" the lease; a process of this machine that is gone does not count.
    rerun = one_pass(setup)
    assert [(r.name, r.status, r.version) for r in rerun.results] == [("two.csv", "published", "v0002")]
    assert any("interrupted" in note for note in rerun.recovered)
    assert_consistent(setup, files=2)


def test_two_watchers_on_one_inbox_never_process_the_same_batch(setup):
    batch, inbox = setup["batch"], setup["inbox"]
    for number, start in enumerate(range(0, 45, 15), start=1):
        drop(inbox, f"part-{number}.csv", batch.iloc[start:start + 15], 1000 * number)
    start = threading.Barrier(2)
    summaries, errors = [], []

    def watcher():
        try:
            start.wait()
            summaries.append(one_pass(setup))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=watcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    published = [r for s in summaries for r in s.results if r.status == "published"]
    assert sorted(r.version for r in published) == ["v0001", "v0002", "v0003"]
    assert len({r.digest for r in published}) == 3
    assert_consistent(setup, files=3)


def test_an_fsspec_inbox_is_read_and_its_files_moved(setup):
    import fsspec

    fs = fsspec.filesystem("memory")
    url = f"memory://inbox-{uuid.uuid4().hex[:8]}"
    with fs.open(f"{url}/remote.csv", "w") as handle:
        setup["batch"].to_csv(handle, index=False)
    summary = watch(make_request(url, dataset="tiny", config=setup["config"]))
    assert [(r.name, r.status, r.version) for r in summary.results] == [("remote.csv", "published", "v0001")]
    assert fs.exists(f"{url}/processed/remote.csv") and not fs.exists(f"{url}/remote.csv")
    provenance = json.loads((setup["root"] / "v0001" / "provenance.json").read_text())
    assert provenance["chain"]["batch"]["source"] == url


def test_a_batch_above_the_review_rate_is_held_until_a_person_decides(setup):
    setup["config"].write_text(setup["config"].read_text() + "review_above = 0.05\n")
    batch, inbox = setup["batch"], setup["inbox"]
    drop(inbox, "suspicious.csv", batch, 1000)
    held = one_pass(setup).results[0]
    assert held.status == "held" and "above watch.review_above = 5%" in held.message
    assert (inbox / "suspicious.csv").exists() and list_versions(setup["root"]) == []
    assert one_pass(setup).results[0].status == "waiting"

    approved = invoke("review", "batch", held.run_id[:8], "--approve", "--note", "known bad rows", "--reviewer", "ann")
    assert approved.exit_code == 0, approved.output
    assert "approved batch suspicious.csv" in approved.output and "next `poisonguard watch` pass" in approved.output
    published = one_pass(setup).results[0]
    assert (published.status, published.version) == ("published", "v0001")
    notes = json.loads((setup["root"] / "v0001" / "provenance.json").read_text())["notes"]
    assert "Published after review: approved by ann: known bad rows." in notes
    assert store_rows(setup, "SELECT review, reviewer, review_note FROM watch_batches") == [("approve", "ann", "known bad rows")]

    drop(inbox, "also-suspicious.csv", batch.assign(id=batch["id"] + "-2"), 2000)
    second = one_pass(setup).results[0]
    assert invoke("review", "batch", second.run_id, "--reject", "--note", "no").exit_code == 0
    rejected = one_pass(setup).results[0]
    assert rejected.status == "rejected" and "rejected by" in rejected.message
    assert (inbox / "rejected" / "also-suspicious.csv").exists()
    again = invoke("review", "batch", second.run_id, "--approve")
    assert again.exit_code == 2 and "already rejected" in again.output


def test_watch_options_are_checked_before_anything_starts(setup, tmp_path):
    missing = invoke("watch", tmp_path / "nowhere", "--dataset", "tiny", "--config", setup["config"], "--once")
    assert missing.exit_code == 2 and "inbox folder not found" in missing.output
    no_label = invoke("watch", setup["inbox"], "--dataset", "tiny", "--once")
    assert no_label.exit_code == 2 and "no label column" in no_label.output
    bad_name = invoke("watch", setup["inbox"], "--dataset", "a/b", "--label", "label", "--once")
    assert bad_name.exit_code == 2 and "plain name" in bad_name.output
    no_schedule = invoke("serve", "--dataset", "tiny", "--config", setup["config"], "--inbox", setup["inbox"])
    assert no_schedule.exit_code == 2 and "--interval SECONDS or --cron" in no_schedule.output


def test_without_verbose_prefect_does_not_log_a_rejected_file_as_a_crash():
    hide_expected_failures()
    logger = logging.getLogger("prefect.task_runs")

    def logged(message, error=None):
        info = (type(error), error, None) if error is not None else None  # as Prefect's record carries it
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, message, (), info)
        return all(f.filter(record) for f in logger.filters)

    empty = InputError("inbox/empty.csv: the file is empty")
    assert not logged("Task run failed with exception: InputError('inbox/empty.csv: ...')", empty)
    assert not logged("Finished in state Failed('Task run encountered an exception InputError: inbox/empty.csv')")
    # Anything else is a bug or the operator's: still logged, traceback and all.
    assert logged("Task run failed with exception: RuntimeError('disk on fire')", RuntimeError("disk on fire"))
    assert logged("Finished in state Failed('Task run encountered an exception RuntimeError: disk on fire')")
