"""The thread pool of the Numba kernels: tasks on every thread, the caller's among them.

The per-image kernels are plain ``nogil`` compiled functions called from Python threads
(:func:`each_task`), not ``prange`` loops, which took far longer to compile. A task is a
run of consecutive images (:func:`image_runs`): one call into compiled code for all of them,
since each call from Python checks its arguments under the GIL. Runs are long first and
single images at the end, and each thread takes the next task when it is done, so that a
core shared with another process simply does fewer. BLAS runs one thread per call
(:func:`gcn_numpy.backends.numba.blas.single_threaded`).

The weight gradient sums its images in fixed chunks (:func:`chunks`), each chunk by one
thread in image order and the chunks in order: results do not depend on which thread took
which image, nor on the thread count.
"""

import concurrent.futures
import functools
import itertools
import threading

import numba

from . import memory
from .blas import single_threaded

__all__ = [
    "CHUNKS",
    "RUNS_SHARE",
    "thread_count",
    "each_task",
    "chunks",
    "image_runs",
    "image_parts",
    "splits_images",
]

CHUNKS = 4  # of the weight gradient's batch: more made the final sum cost more
RUNS_SHARE = 2  # a run takes 1 / (RUNS_SHARE * threads) of the images left, at least one


def thread_count():
    """Threads of the kernels: Numba's setting (:func:`numba.set_num_threads`).

    Examples
    --------
    >>> thread_count() >= 1
    True
    """
    return numba.get_num_threads()


@functools.cache
def _pool(n_threads):
    """The helper threads of :func:`each_task` (the caller and ``n_threads`` more), one
    pool per count."""
    return concurrent.futures.ThreadPoolExecutor(n_threads, thread_name_prefix="gcn_numba")


def each_task(count, run, scratch, key=None, then=None):
    """``run(i, own)`` for every task ``i < count``, on :func:`thread_count` threads (the
    caller's among them); ``own = scratch()`` is one thread's scratch, made once, or kept
    from an earlier call with the same ``key`` (:func:`.memory.reused`). ``then = (count2,
    run2)``: tasks ``run2(j)``, ``j < count2``, that start once every task of ``run`` has
    ended, on the same threads (a second call would wake the threads again).

    Each thread takes the next task whenever it is done. BLAS runs one thread per call.
    Several threads of the caller may run kernels at once: each call waits for its own
    tasks only. An error in a task reaches the caller once every thread has stopped.

    Examples
    --------
    >>> done = []
    >>> each_task(5, lambda i, own: done.append(i), list, then=(1, lambda j: done.append("then")))
    >>> sorted(done[:5]), done[5]
    ([0, 1, 2, 3, 4], 'then')
    """
    n_threads = max(1, min(thread_count(), max(count, then[0] if then else 0)))
    tasks, later = itertools.count(), itertools.count()
    left, ended = [count], threading.Condition()

    def work(own):
        while (i := next(tasks)) < count:
            try:
                run(i, own)
            finally:  # on an error too: the other threads then end their tasks, not wait
                with ended:
                    left[0] -= 1
                    ended.notify_all()
        if then is not None:
            with ended:  # every task is taken: those still running end
                ended.wait_for(lambda: left[0] == 0)
            while (j := next(later)) < then[0]:
                then[1](j)

    with memory.reused(key, scratch, n_threads) as owned, single_threaded():
        # the calling thread is one of the threads: it starts at once, where a pool thread
        # starts later and the caller would wake later again after the last task
        helpers = [_pool(n_threads - 1).submit(work, own) for own in owned[1:]]
        try:
            work(owned[0])
        finally:  # the scratch goes back only once no thread uses it
            concurrent.futures.wait(helpers)
        for done in helpers:
            done.result()  # a helper's error


def chunks(N):
    """The weight gradient's chunks of images ``[(start, stop), ...]``: each chunk is summed
    by one thread in image order, the chunks' sums are added in chunk order. The chunks
    depend on ``N`` alone, so that the result does not depend on the threads.

    Examples
    --------
    >>> chunks(10)
    [(0, 3), (3, 6), (6, 9), (9, 10)]
    """
    size = -(-N // CHUNKS)
    return [(start, min(N, start + size)) for start in range(0, N, size)]


def image_runs(N):
    """Runs of consecutive images ``[(start, stop), ...]``, the tasks of the per-image
    kernels, one call of compiled code each: long runs first, then shorter ones, down to
    single images at the end, so that a thread slowed down by another process waits for
    the others at most one image's time.

    Examples
    --------
    >>> _runs(16, 4)  # 16 images on two threads
    ((0, 4), (4, 7), (7, 10), (10, 12), (12, 13), (13, 14), (14, 15), (15, 16))
    """
    return _runs(N, RUNS_SHARE * thread_count())


@functools.lru_cache(maxsize=64)
def _runs(N, share):
    runs, start = [], 0
    while start < N:
        stop = start + max(1, -(-(N - start) // share))
        runs.append((start, stop))
        start = stop
    return tuple(runs)


def image_parts(N, units):
    """The tasks of a per-image kernel whose work on one image splits into ``units``
    independent parts (rows, blocks of rows): ``[(n0, n1, u0, u1), ...]``, images ``n0 <=
    n < n1`` and of each the units ``u0 <= u < u1``. Runs of whole images
    (:func:`image_runs`) or, with fewer images than threads (one large canvas), each
    image's units in runs by the same rule, so that every thread has work.

    Examples
    --------
    >>> _parts(16, 10, 2)[:2]  # 16 images on two threads: runs of whole images
    [(0, 4, 0, 10), (4, 7, 0, 10)]
    >>> _parts(1, 10, 2)  # one image: runs of its units
    [(0, 1, 0, 3), (0, 1, 3, 5), (0, 1, 5, 7), (0, 1, 7, 8), (0, 1, 8, 9), (0, 1, 9, 10)]
    """
    return _parts(N, units, thread_count())


def _parts(N, units, n_threads):
    if not _splits(N, units, n_threads):
        return [(n0, n1, 0, units) for n0, n1 in _runs(N, RUNS_SHARE * n_threads)]
    return [(n, n + 1, u0, u1) for n in range(N) for u0, u1 in _runs(units, RUNS_SHARE * n_threads)]


def splits_images(N, units):
    """Whether each of ``N`` images, ``units`` parts each, goes over the threads
    (:func:`image_parts`): fewer images than threads, and more than one part an image.

    Examples
    --------
    >>> splits_images(10**6, 8), splits_images(1, 1)
    (False, False)
    """
    return _splits(N, units, thread_count())


def _splits(N, units, n_threads):
    return N < n_threads and units > 1
