"""One watcher at a time per dataset: a lease in the store, renewed by a heartbeat thread."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Optional

from poisonguard.pipelines.core.processes import is_gone

log = logging.getLogger("poisonguard.watch")


class LeaseLost(RuntimeError):
    """Another watcher took this dataset's lease (ours expired)."""



class DatasetLease:
    """The dataset's lease, held for the pass and renewed by a heartbeat thread."""

    def __init__(self, store, dataset: str, seconds: float) -> None:
        self.store, self.dataset, self.seconds = store, dataset, seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.holder: Optional[dict] = None
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "DatasetLease":
        self.holder = self.store.acquire_lease(self.dataset, self.owner, self.seconds, is_stale=_holder_is_gone)
        if self.holder is None:
            self._thread = threading.Thread(target=self._beat, name=f"lease-{self.dataset}", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self.store.renew_lease(self.dataset, self.owner, self.seconds):
                    self._lost.set()
                    return
            except Exception:  # noqa: BLE001 - a database hiccup; the next beat retries
                log.warning("could not renew the lease of dataset %s", self.dataset, exc_info=True)

    def check(self) -> None:
        """Raise LeaseLost when another watcher has taken over."""
        if self._lost.is_set():
            raise LeaseLost(f"lost the lease of dataset {self.dataset!r} to another watcher; stopping")

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self.store.release_lease(self.dataset, self.owner)


def _holder_is_gone(holder: dict) -> bool:
    """A lease held by a process of this machine that no longer exists."""
    return is_gone(holder["owner"])


