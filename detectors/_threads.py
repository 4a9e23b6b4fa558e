"""Loops over independent columns run on the machine's cores.

Most of a detector's time on a large batch goes to numpy calls over whole
columns (sorting, ``searchsorted``, the binomial tail), which release the
GIL: two columns can be worked on at once by two threads. Each call writes
only its own column, so the results do not depend on how many threads ran.
``OMP_NUM_THREADS``, the usual way to give a process a share of the cores,
caps the threads here too (the detection benchmark runs several processes
with 1 each).
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Callable, Iterable, Iterator, TypeVar

from threadpoolctl import threadpool_limits

Item = TypeVar("Item")
Result = TypeVar("Result")
# More threads than this gains little: the columns contend for memory bandwidth.
MAX_THREADS = 8


def thread_count() -> int:
    """Threads a column loop may use: the cores this process may run on, at most ``OMP_NUM_THREADS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.strip().isdigit() and int(limit) > 0:
        cores = min(cores, int(limit))
    return max(1, min(cores, MAX_THREADS))


def map_in_threads(function: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    """``[function(item) for item in items]``, on up to ``thread_count()`` threads, in order."""
    items = list(items)
    workers = min(thread_count(), len(items))
    if workers < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poisonguard-columns") as pool:
        return list(pool.map(function, items))


def imap_in_threads(function: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
    """``function(item)`` for each item, in order, as each is done, on up to ``thread_count()`` threads.

    At most one item per thread is worked on beyond the result the caller
    holds: a caller that folds each result in and lets it go holds a few of
    them, not all (``map_in_threads`` returns all at once).
    """
    items = iter(items)
    workers = thread_count()
    if workers < 2:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poisonguard-columns") as pool:
        pending = deque(pool.submit(function, item) for item in islice(items, workers))
        while pending:
            result = pending.popleft().result()
            for item in islice(items, 1):
                pending.append(pool.submit(function, item))
            yield result


def one_blas_thread():
    """A context in which BLAS (OpenBLAS, MKL) runs on one thread; classifier fits go in it.

    Fitting a logistic regression is many small BLAS calls (a product of the
    rows with the coefficients per L-BFGS step). On the 2-core machine
    OpenBLAS's two threads made each fit about 5 times slower than one
    (16,000 rows x 48 columns: 2.2-2.7 s against 0.45 s, the same 255
    iterations), and the label check without a reference on 336,776 flights
    took 32 s instead of 5 s. Large predictions stay outside it.
    """
    return threadpool_limits(limits=1, user_api="blas")
