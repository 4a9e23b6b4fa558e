"""What a watch pass carries from step to step, and what it reports."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from poisonguard.pipelines.core.config import RunConfig
from poisonguard.pipelines.store import QuarantineStore
from poisonguard.pipelines.watch.request import WatchRequest



@dataclass
class BatchResult:
    """What happened to one inbox file in a pass."""

    name: str
    digest: str
    status: str  # published | rejected | held | duplicate | waiting | failed
    version: Optional[str] = None
    run_id: Optional[str] = None
    report: Optional[str] = None
    moved_to: Optional[str] = None
    message: str = ""
    rows_in: int = 0
    kept: int = 0
    quarantined: int = 0
    per_check: list = field(default_factory=list)
    batch_checks: list = field(default_factory=list)
    top_quarantined: list = field(default_factory=list)


@dataclass
class WatchSummary:
    """One pass over an inbox."""

    dataset: str
    inbox: str
    root: str
    results: list[BatchResult] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    busy: Optional[str] = None  # the lease holder when another watcher was at work
    head: Optional[str] = None

    def as_dict(self) -> dict:
        return asdict(self)




@dataclass
class WatchContext:
    request: WatchRequest
    config: RunConfig
    store: QuarantineStore
    state: Path
    root: Path
    work: Path  # STATE/watch/NAME: spool, trusted references, public key
    key: Path
    public_key: Path
    run_stage: Callable
    pause: Optional[Callable]
    on_batch: Optional[Callable]
    say: Callable[[str], None]

    @property
    def dataset(self) -> str:
        return self.request.dataset

    @property
    def dataset_dir(self) -> Path:
        return self.root / self.request.dataset


