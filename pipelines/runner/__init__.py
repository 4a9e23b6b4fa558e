"""One run end to end (``execute``, and ``run`` for library callers), and the
settling of runs that were interrupted (``recovery``)."""
from poisonguard.pipelines.runner.execute import check_ready, execute, run

__all__ = ["check_ready", "execute", "run"]
