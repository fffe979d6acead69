"""Independent pieces of a synthesis on several CPU threads, one torch thread each.

The coronal (or sagittal) images of a volume are independent, so on a CPU they can be shared
among threads instead of splitting every operation among them. Splitting every operation
(torch's intra-op parallelism) makes each of PInt's hundred-odd operations per pass wait for
its slowest thread: on a machine whose cores are also busy with other work, one descheduled
thread stalls the other at every operation. Threads that each run whole passes with one
torch thread wait for nobody. Measured on the project's 2-core machine under the load of
other jobs (docs/speed.md): 28 images of 36 x 512 through the default PInt took 54 to 71 ms
per image with two such threads against 93 to 94 ms with one thread and two intra-op threads.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


@contextlib.contextmanager
def cpu_workers(count: int) -> Iterator[ThreadPoolExecutor | None]:
    """A pool of ``count`` threads that run torch with one thread each (None for one).

    torch's thread count is process-wide: it is 1 while the pool lives (the pool's threads
    set it as they start) and set back to its value before the pool on exit, once every
    piece of work has finished.
    """
    if count <= 1:
        yield None
        return
    previous = torch.get_num_threads()
    pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="napari-xview-synthesis",
                              initializer=torch.set_num_threads, initargs=(1,))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(previous)


def in_order(pool: ThreadPoolExecutor | None, function: Callable[..., T],
             arguments: Iterable[tuple], in_flight: int) -> Iterator[T]:
    """``function(*args)`` for each tuple of ``arguments``, yielded in their order.

    With a pool, at most ``in_flight`` calls are submitted ahead (what bounds memory), the
    next one as soon as the oldest is done, so the threads stay busy while the caller handles
    a result. If the caller stops early (an exception, such as a cancelled synthesis), calls
    not yet started are dropped; those running finish with the pool. Without a pool the calls
    run one by one in this thread.
    """
    if pool is None:
        for args in arguments:
            yield function(*args)
        return
    remaining = iter(arguments)
    pending: deque[Future[T]] = deque(
        pool.submit(function, *args) for args in itertools.islice(remaining, in_flight))
    try:
        while pending:
            result = pending.popleft().result()
            following = next(remaining, None)
            if following is not None:
                pending.append(pool.submit(function, *following))
            yield result
    finally:
        for future in pending:
            future.cancel()
