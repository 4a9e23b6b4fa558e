"""The review API: the queue and its decisions as JSON, for tools (bearer token)."""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from poisonguard.pipelines.core.jsonable import to_jsonable
from poisonguard.pipelines.review import decide
from poisonguard.pipelines.store import QuarantineStore
from poisonguard.pipelines.web import views
from poisonguard.pipelines.web.requests import require_csrf, store_of

router = APIRouter(prefix="/api")


class DecisionBody(BaseModel):
    """``POST /api/entries/{id}/decision``."""

    model_config = ConfigDict(extra="forbid")

    status: str
    note: str
    reviewer: Optional[str] = None
    expected_status: Optional[str] = None
    force: bool = False


class BulkDecisionBody(DecisionBody):
    """``POST /api/decisions``."""

    ids: list[int]


@router.get("/entries")
def api_entries(request: Request):
    store = store_of(request)
    query = views.parse_queue_query(request.query_params, default_status=None)
    total = store.count_entries(query.queue)
    entries = store.list_entries(query.queue, limit=query.per_page, offset=query.offset)
    return JSONResponse({
        "total": total, "page": query.page, "per_page": query.per_page,
        "entries": [views.summary(e) for e in entries],
    })


@router.get("/entries/{entry_id}")
def api_entry(request: Request, entry_id: str):
    return JSONResponse(views.detail(store_of(request).get_entry(views.parse_entry_id(entry_id))))


@router.post("/entries/{entry_id}/decision", dependencies=[Depends(require_csrf)])
def api_decide(request: Request, entry_id: str, body: DecisionBody):
    store = store_of(request)
    number = views.parse_entry_id(entry_id)
    made = _decide_body(store, [number], body)
    return JSONResponse({"decisions": made, "entry": views.summary(store.get_entry(number))})


@router.post("/decisions", dependencies=[Depends(require_csrf)])
def api_decide_many(request: Request, body: BulkDecisionBody):
    for entry_id in body.ids:
        views.parse_entry_id(str(entry_id))
    return JSONResponse({"decisions": _decide_body(store_of(request), body.ids, body)})


def _decide_body(store: QuarantineStore, ids: list[int], body: DecisionBody) -> list[dict]:
    note, reviewer = views.check_decision_text(body.note, body.reviewer)
    made = decide(
        store, ids, status=body.status, note=note, reviewer=reviewer, force=body.force,
        expected_status=body.expected_status,
    )
    return [to_jsonable(decision) for decision in made]
