"""`poisonguard review` on a store filled by a real tiny run: list, show, release, reject, serve."""
import json
import re
import sys
import types

import pytest

from poisonguard.pipelines.cli import review as review_cli
from tests.cli_helpers import entry_id, invoke, listing, shown
from tests.tiny_data import BROKEN_NUMBER, FAR_AWAY, FLIPPED, POISONED, UNKNOWN_COLOUR

def test_list_prints_a_table_with_a_footer(tiny_run):
    entries = listing()
    result = invoke("review", "list")
    assert result.exit_code == 0, result.output
    for row_id in POISONED:
        assert row_id in result.output
    assert tiny_run["run_id"][:8] in result.output and tiny_run["run_id"] not in result.output
    assert f"showing {len(entries)} of {len(entries)}" in result.output
    paged = invoke("review", "list", "--limit", 2)
    assert f"showing 2 of {len(entries)}; --offset 2 for more" in paged.output


def test_list_json_has_the_fields_and_values_of_each_entry(tiny_run):
    entries = listing()
    assert {e["row_id"] for e in entries} >= set(POISONED)
    assert len(entries) <= len(POISONED) + 2  # alpha 0.01, three detectors: few false alarms
    far = next(e for e in entries if e["row_id"] == FAR_AWAY)
    assert set(far) >= {"id", "row_id", "run", "status", "checks", "reasons", "score", "dataset", "p_value", "created_at"}
    assert (far["run"], far["status"], far["dataset"]) == (tiny_run["run_id"], "pending", "tiny")
    assert {"outlier.ecod", "expectation.values_to_be_between"} <= set(far["checks"])
    # 1 - its smallest p-value: far beyond the trusted tail, ECOD's is about 2e-8.
    assert far["score"] == pytest.approx(1.0, abs=1e-6)
    assert any("x = 60 is outside the expected range" in reason for reason in far["reasons"])
    assert far["created_at"].endswith("+00:00")
    # Most suspicious first.
    assert [e["score"] for e in entries] == sorted((e["score"] for e in entries), reverse=True)


def test_list_filters(tiny_run):
    entries = listing()
    assert [e["row_id"] for e in listing("--check", "expectation.parsable_type")] == [BROKEN_NUMBER]
    flipped = listing("--check", "label.trusted_model")
    assert set(FLIPPED) <= {e["row_id"] for e in flipped}
    assert all("label.trusted_model" in e["checks"] for e in flipped)
    # Entries breaking a hard rule (a cell that does not parse) score exactly 1; inferred
    # rules (the unknown colour breaks a value set learnt from 180 rows) and detectors
    # score 1 - their smallest p-value, just below.
    below = {e["row_id"] for e in listing("--below-score", 1)}
    assert below == {e["row_id"] for e in entries} - {BROKEN_NUMBER}
    assert set(FLIPPED) | {UNKNOWN_COLOUR} <= below
    assert listing("--status", "released") == []
    assert len(listing("--status", "pending", "--run", tiny_run["run_id"][:8])) == len(entries)
    assert [e["id"] for e in listing("--limit", 2, "--offset", 1)] == [e["id"] for e in entries[1:3]]
    unknown = invoke("review", "list", "--run", "ffffffff")
    assert unknown.exit_code == 2 and "no run 'ffffffff'" in unknown.output
    bad = invoke("review", "list", "--status", "done")
    assert bad.exit_code == 2 and "status 'done' is not one of pending" in bad.output


def test_show_gives_the_nearest_trusted_labels_of_a_flipped_row(tiny_run):
    entry = entry_id(FLIPPED[0])
    data = shown(entry)
    evidence = data["evidence"]
    majority = max(evidence["label_votes"], key=evidence["label_votes"].get)
    assert majority != evidence["label"] == data["row"]["label"]
    result = invoke("review", "show", entry)
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"entry {entry}" in text and FLIPPED[0] in text
    assert "nearest rows of the trusted reference" in text
    assert f"label votes of the neighbours: {majority} {evidence['label_votes'][majority]}" in text
    assert text.count(f" {majority} ") >= evidence["label_votes"][majority]  # one line per neighbour
    assert "label.trusted_model" in text and "p-value" in text
    assert "decisions: none yet" in text


def test_show_gives_the_trusted_range_of_the_far_away_row(tiny_run):
    entry = entry_id(FAR_AWAY)
    data = shown(entry)
    top = data["evidence"]["features"][0]
    low, high = top["trusted_range"]
    result = invoke("review", "show", entry)
    assert result.exit_code == 0, result.output
    assert "features furthest from the trusted reference" in result.output
    assert f"{low:.4g} to {high:.4g}" in result.output
    assert "outside the trusted" in result.output and "60.0" in result.output
    assert data["findings"] and {"check", "score", "p_value", "reason"} <= set(data["findings"][0])


def test_release_and_reject_record_reviewer_and_note(tiny_run):
    far, flipped = entry_id(FAR_AWAY), entry_id(FLIPPED[0])
    released = invoke("review", "release", far, "--note", "a rare but real colour", "--reviewer", "ann")
    assert released.exit_code == 0, released.output
    assert "released 1 entry" in released.output and FAR_AWAY in released.output
    rejected = invoke("review", "reject", flipped, "--note", "label flipped", "--reviewer", "bob")
    assert rejected.exit_code == 0, rejected.output
    history = shown(far)["history"]
    assert [(h["status_before"], h["status_after"], h["reviewer"], h["note"]) for h in history] == [
        ("pending", "released", "ann", "a rare but real colour")
    ]
    assert shown(flipped)["status"] == "rejected"
    assert {e["row_id"] for e in listing("--status", "released")} == {FAR_AWAY}
    text = invoke("review", "show", far).output
    assert "pending → released" in text and "ann" in text


def test_deciding_again_needs_force_and_is_recorded_as_a_change(tiny_run):
    far = entry_id(FAR_AWAY)
    assert invoke("review", "release", far, "--note", "fine", "--reviewer", "ann").exit_code == 0
    again = invoke("review", "reject", far, "--note", "on second thought", "--reviewer", "bob")
    assert again.exit_code == 5
    assert f"entry {far} was already released by ann" in again.output and "--force" in again.output
    assert shown(far)["status"] == "released"
    forced = invoke("review", "reject", far, "--note", "on second thought", "--reviewer", "bob", "--force")
    assert forced.exit_code == 0, forced.output
    history = shown(far)["history"]
    assert [(h["status_before"], h["status_after"], h["reviewer"]) for h in history] == [
        ("pending", "released", "ann"),
        ("released", "rejected", "bob"),
    ]


def test_bulk_decisions_by_check_take_pending_entries_unless_forced(tiny_run, monkeypatch):
    label_entries = listing("--check", "label.trusted_model")
    assert len(label_entries) > 3
    first = entry_id(FLIPPED[0])
    assert invoke("review", "reject", first, "--note", "flipped", "--reviewer", "ann").exit_code == 0
    # A bulk decision lists its first entries and counts the rest.
    monkeypatch.setattr(review_cli, "SHOWN_DECISIONS", 2)
    bulk = invoke("review", "release", "--check", "label.trusted_model", "--note", "model was wrong", "--reviewer", "cy")
    assert bulk.exit_code == 0, bulk.output
    released = len(label_entries) - 1
    assert f"released {released} entries (were {released} pending):" in bulk.output
    assert len(re.findall(r"^ *\d+ +\S+ +pending +released *$", bulk.output, flags=re.MULTILINE)) == 2
    assert f"and {released - 2} more (poisonguard review list --status released lists every released entry)" in (
        " ".join(bulk.output.split())
    )
    statuses = {e["row_id"]: e["status"] for e in listing("--check", "label.trusted_model")}
    assert statuses.pop(FLIPPED[0]) == "rejected"  # decided already: left alone
    assert set(statuses.values()) == {"released"}
    others = listing("--status", "pending")
    assert others and not any("label.trusted_model" in e["checks"] for e in others)
    forced = invoke("review", "reject", "--check", "label.trusted_model", "--note", "all poison", "--force")
    assert forced.exit_code == 0, forced.output
    # The rejected one needs no change.
    assert f"rejected {len(label_entries) - 1} entries (were {len(label_entries) - 1} released)" in forced.output
    assert {e["status"] for e in listing("--check", "label.trusted_model")} == {"rejected"}


def test_bulk_decision_needs_ids_or_a_filter(tiny_run):
    result = invoke("review", "reject", "--note", "everything")
    assert result.exit_code == 2 and "give entry ids, --row, or a filter" in result.output
    assert listing("--status", "rejected") == []


def test_unknown_entry_exits_2(tiny_run):
    far = entry_id(FAR_AWAY)
    result = invoke("review", "release", far, 9999, "--note", "fine")
    assert result.exit_code == 2 and "no quarantine entry 9999; nothing was decided" in result.output
    assert shown(far)["status"] == "pending"  # all or none
    assert invoke("review", "show", 9999).exit_code == 2
    assert invoke("review", "release", far, "--note", "  ").exit_code == 2


def test_a_missing_store_is_a_clear_error_and_is_not_created(isolated_state, tmp_path):
    result = invoke("review", "list")
    assert result.exit_code == 2
    assert f"no quarantine store at {isolated_state / 'quarantine.db'}: run `poisonguard run` first" in result.output
    assert not (isolated_state / "quarantine.db").exists()
    config = tmp_path / "review.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "elsewhere.db"}"\n')
    other = invoke("review", "list", "--config", config)
    assert other.exit_code == 2 and "elsewhere.db" in other.output and not (tmp_path / "elsewhere.db").exists()


def test_store_and_config_options_choose_the_store(tiny_run, tmp_path):
    moved = tmp_path / "moved.db"
    tiny_run["database"].rename(moved)
    assert invoke("review", "list").exit_code == 2
    by_option = invoke("review", "list", "--json", "--store", f"sqlite:///{moved}")
    assert by_option.exit_code == 0 and FAR_AWAY in by_option.stdout
    config = tmp_path / "review.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{moved}"\n')
    by_config = invoke("review", "show", "1", "--json", "--config", config)
    assert by_config.exit_code == 0 and json.loads(by_config.stdout)["id"] == 1


def test_serve_hands_the_store_and_token_to_the_web_app(tiny_run, monkeypatch):
    calls = []
    fake = types.ModuleType("poisonguard.pipelines.web.server")
    fake.serve = lambda **options: calls.append(options)
    monkeypatch.setitem(sys.modules, "poisonguard.pipelines.web.server", fake)
    monkeypatch.setenv("POISONGUARD_REVIEW_TOKEN", "s3cret")
    result = invoke("review", "serve", "--port", 9911)
    assert result.exit_code == 0, result.output
    assert calls == [{"store_url": tiny_run["store_url"], "host": "127.0.0.1", "port": 9911, "token": "s3cret"}]
