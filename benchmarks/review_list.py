"""How fast the review web app lists 10,000 quarantined rows (API and HTML page).

Fills a fresh SQLite store with ``--rows`` synthetic quarantined rows (two
runs, one to three findings each, evidence shaped like the pipeline's:
nearest trusted rows, top features, three histograms), decides a tenth of
them, then times requests through the whole app (auth middleware included)
and prints a markdown table of medians over ``--repeats`` repeats:

- ``GET /api/entries``: the first page of 50, the last page, a filtered page,
  and every row through pages of 200;
- ``GET /``: the HTML queue's first page, a filtered page and the last page;
- ``GET /entries/{id}``: one row page.

    OMP_NUM_THREADS=1 python benchmarks/review_list.py --repeats 7
    OMP_NUM_THREADS=1 python benchmarks/review_list.py --server uvicorn   # over a real socket
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


from poisonguard.detectors.base import make_findings  # noqa: E402
from poisonguard.pipelines.review import decide  # noqa: E402
from poisonguard.pipelines.store import EntryFilter, QuarantineStore  # noqa: E402
from poisonguard.pipelines.web.app import create_app  # noqa: E402

TOKEN = "benchmark-review-token-0123456789"
COLUMNS = [f"f{i:02d}" for i in range(10)]
LABELS = ["cat", "dog", "bird"]
CHECKS = ["outlier.ecod", "label.trusted_model", "label.confident_learning", "expectation.values_to_be_between"]


def synthetic_run(store: QuarantineStore, rows: int, seed: int) -> str:
    """Quarantine ``rows`` synthetic rows in a new run; return its id."""
    rng = np.random.default_rng(seed)
    run_id = store.start_run(dataset="synthetic", config={}, tool_version="benchmark")
    ids = [f"s{seed}-{i:06d}" for i in range(rows)]
    frame = pd.DataFrame(np.round(rng.normal(0, 1, (rows, len(COLUMNS))), 4), columns=COLUMNS)
    frame.insert(0, "id", ids)
    frame["label"] = rng.choice(LABELS, rows)
    findings = []
    for position, check in enumerate(CHECKS):
        chosen = rng.random(rows) < (0.9 if position == 0 else 0.35)
        hit = [row_id for row_id, take in zip(ids, chosen) if take]
        p_values = rng.uniform(1e-8, 0.01, len(hit)) if not check.startswith("expectation") else np.full(len(hit), np.nan)
        findings.append(make_findings(
            row_ids=hit, check=check, scores=rng.uniform(1, 30, len(hit)), flagged=[True] * len(hit),
            reasons=[f"{check}: row {r} is unusual against trusted rows (synthetic)" for r in hit], p_values=p_values,
        ))
    covered = set(pd.concat(findings)["row_id"])
    orphans = [row_id for row_id in ids if row_id not in covered]
    if orphans:
        findings.append(make_findings(row_ids=orphans, check="outlier.ecod", scores=[5.0] * len(orphans),
                                      flagged=[True] * len(orphans), reasons=["far from trusted rows"] * len(orphans),
                                      p_values=[0.001] * len(orphans)))
    edges = [float(e) for e in np.linspace(-3, 3, 21)]
    evidence = {}
    for row_id, values in zip(ids, frame[COLUMNS].to_numpy()):
        evidence[row_id] = {
            "population": "trusted reference",
            "label": str(rng.choice(LABELS)),
            "nearest": [{"label": str(rng.choice(LABELS)), "distance": round(float(d), 4)} for d in sorted(rng.uniform(0.5, 3, 5))],
            "label_votes": {"cat": 3, "dog": 2},
            "features": [
                {"column": c, "kind": "numeric", "value": float(v), "unusualness": abs(float(v)), "robust_z": float(v),
                 "trusted_range": [-3.0, 3.0], "median": 0.0, "note": "within the trusted range"}
                for c, v in list(zip(COLUMNS, values))[:5]
            ],
            "histograms": {c: {"edges": edges, "counts": [int(x) for x in rng.integers(0, 50, 20)]} for c in COLUMNS[:3]},
        }
    store.add_quarantined(run_id, dataset="synthetic", rows=frame, findings=pd.concat(findings, ignore_index=True),
                          row_id_column="id", evidence_by_row=evidence)
    store.finish_run(run_id, status="succeeded", counts={"quarantined": rows})
    return run_id


@contextlib.contextmanager
def client_for(app, server: str):
    """A client with the bearer token: in-process (TestClient) or over a socket (uvicorn + httpx)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if server == "testclient":
        from fastapi.testclient import TestClient

        with TestClient(app, headers=headers) as client:
            yield client
        return
    import httpx
    import uvicorn

    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so,
    # and without it every keep-alive response waits ~40 ms for a delayed ACK.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not uvicorn_server.started:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}", headers=headers) as client:
            yield client
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)


def timed(function, repeats: int) -> float:
    """Median wall time of ``function()`` in milliseconds (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--server", choices=["testclient", "uvicorn"], default="testclient")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="poisonguard-review-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'quarantine.db'}"
        started = time.perf_counter()
        store = QuarantineStore(url)
        first_run = synthetic_run(store, options.rows // 2, seed=1)
        synthetic_run(store, options.rows - options.rows // 2, seed=2)
        ids = store.matching_ids(EntryFilter())
        decide(store, ids[::20], status="released", note="benchmark", reviewer="bench")
        decide(store, ids[10::20], status="rejected", note="benchmark", reviewer="bench")
        fill_seconds = time.perf_counter() - started
        total = store.count_entries()
        filtered = EntryFilter(status="pending", run_id=first_run, check="label.trusted_model", below_score=0.999999)
        filtered_total = store.count_entries(filtered)
        pending_total = store.count_entries(EntryFilter(status="pending"))
        filter_query = f"status=pending&run={first_run}&check=label.trusted_model&max_score=0.999999"

        app = create_app(store_url=url, token=TOKEN)
        with client_for(app, options.server) as client:
            def get(path: str, expect_entries: int | None = None):
                def call():
                    response = client.get(path)
                    assert response.status_code == 200, (path, response.status_code, response.text[:200])
                    if expect_entries is not None:
                        assert len(response.json()["entries"]) == expect_entries, path
                    return response
                return call

            def all_pages():
                seen = 0
                for page in range(1, -(-total // 200) + 1):
                    seen += len(client.get(f"/api/entries?per_page=200&page={page}").json()["entries"])
                assert seen == total

            last_api = -(-total // 50)
            last_html = -(-pending_total // 50)
            rows = [
                ("API", "first page, 50 rows", "/api/entries?per_page=50", get("/api/entries?per_page=50", 50)),
                ("API", f"last page ({last_api}), 50 rows", f"/api/entries?page={last_api}",
                 get(f"/api/entries?page={last_api}", total - (last_api - 1) * 50)),
                ("API", f"filtered ({filtered_total:,} match), first 50", "/api/entries?" + filter_query.replace(first_run, "RUN"),
                 get(f"/api/entries?{filter_query}", min(50, filtered_total))),
                ("API", f"all {total:,} rows, {-(-total // 200)} pages of 200", "/api/entries?per_page=200&page=1..N", all_pages),
                ("HTML", "queue, first page (pending, 50 rows)", "/", get("/")),
                ("HTML", f"queue, last page ({last_html})", f"/?page={last_html}", get(f"/?page={last_html}")),
                ("HTML", "queue, filtered page", "/?" + filter_query.replace(first_run, "RUN"), get(f"/?{filter_query}")),
                ("HTML", "queue, 200 rows per page", "/?per_page=200", get("/?per_page=200")),
                ("HTML", "row page (evidence + 3 plots)", f"/entries/{ids[1]}", get(f"/entries/{ids[1]}")),
            ]
            results = [(kind, what, path, timed(call, options.repeats)) for kind, what, path, call in rows]
        store.close()

    print(f"{total:,} quarantined rows in SQLite ({pending_total:,} pending), filled in {fill_seconds:.1f} s; "
          f"client: {options.server}; queue indexes: as shipped (score DESC, id) and (status, score DESC, id); median of {options.repeats} repeats; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    print()
    print("| what | request | median ms |")
    print("| --- | --- | ---: |")
    for kind, what, path, milliseconds in results:
        print(f"| {kind}: {what} | `{path}` | {milliseconds:,.1f} |")


if __name__ == "__main__":
    main()
