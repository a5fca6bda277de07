"""Timing harness shared by the benchmarks: each contender in its own fresh process, taking turns.

Why separate processes: what else a process has done changes how fast NumPy code runs in it.
glibc's malloc serves blocks above its mmap threshold (128 KB at first) with a fresh mmap and
hands freed heap memory above its trim threshold back to the OS, so such temporaries pay page
faults on every call; the first free of a larger mmapped block raises both thresholds for the rest
of the process (glibc's dynamic threshold). Importing PyTorch or running a JAX computation does
that, after which minimaml's landed meta-gradient in the same process ran ~3x faster than in a
process that had loaded nothing else. A user's process may be either, so by default each
contender gets a fresh Python process that imports only its own library (``Worker``): the
reproducible case; ``InProcess`` keeps the single-process behaviour for comparison.

A contender is built from ``make(name, config) -> (run, result)`` (a module-level function, so
that a spawned process can import it; ``prepare`` too): ``run()`` is the timed call,
``result(out)`` turns its output into plain NumPy for correctness checks. Both kinds answer:

    setup(config) -> result(run())      build the call for one setting and run it once
    time(n)       -> (seconds, minor page faults) per call, over n back-to-back calls
    memory()      -> (rss, peak)        bytes: RSS before setup, peak RSS since (Linux /proc:
                                        VmRSS, VmHWM; None elsewhere)
    working_set() -> bytes or None      ``run.working_set()`` if the contender defines it

``prepare(name)``, if given, runs first in the contender's process (e.g. to start JAX's runtime, so
that its fixed cost is not counted in the RSS growth of a setting).

``time_interleaved`` warms each up, calibrates the calls per block, then runs rounds in which every
contender times one block, in an order rotated from round to round; only one process works at a
time, and drift or load from other processes hits all contenders alike.
"""

import multiprocessing
import os
import resource
import time

import numpy as np


def _status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak():
    """Start a new peak-RSS measurement (VmHWM) from now: Linux's clear_refs 5."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class InProcess:
    """A contender in this process."""

    def __init__(self, make, name, prepare=None):
        if prepare is not None:
            prepare(name)                        # e.g. start the library's runtime: not the setting's cost
        self.make, self.name, self.run, self.rss = make, name, None, None

    def setup(self, config):
        self.run = None                        # drop the previous setting's arrays first
        self.rss = _status_kb("VmRSS")
        _reset_peak()
        self.run, result = self.make(self.name, config)
        return result(self.run())

    def time(self, n):
        run = self.run
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        for _ in range(n):
            run()
        dt = time.perf_counter() - t0
        return dt / n, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / n

    def memory(self):
        return self.rss, _status_kb("VmHWM")

    def working_set(self):
        measure = getattr(self.run, "working_set", None)
        return None if measure is None else measure()

    def close(self):
        self.run = None


def _serve(conn, make, name, prepare):
    local = InProcess(make, name, prepare)
    while True:
        method, arg = conn.recv()
        if method == "close":
            return
        try:
            conn.send(("ok", getattr(local, method)(*arg)))
        except BaseException as e:               # noqa: BLE001 - report it to the parent
            conn.send(("error", f"{type(e).__name__}: {e}"))


class Worker:
    """A contender in a fresh Python process (multiprocessing "spawn"), driven over a pipe."""

    def __init__(self, make, name, prepare=None, env=None):
        """env: environment variables for this process only (e.g. OPENBLAS_NUM_THREADS)."""
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, make, name, prepare), daemon=True)
        saved = {k: os.environ.get(k) for k in env or {}}
        os.environ.update(env or {})             # the spawned interpreter inherits os.environ
        try:
            self.process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k)
                else:
                    os.environ[k] = v

    def _call(self, method, *args):
        self.conn.send((method, args))
        status, value = self.conn.recv()
        if status == "error":
            raise RuntimeError(value)
        return value

    def setup(self, config):
        return self._call("setup", config)

    def time(self, n):
        return self._call("time", n)

    def memory(self):
        return self._call("memory")

    def working_set(self):
        return self._call("working_set")

    def close(self):
        if self.process.is_alive():
            self.conn.send(("close", ()))
            self.process.join(timeout=10)


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


def thread_settings():
    """"OPENBLAS_NUM_THREADS=1, ..." for the thread-related environment variables that are set, or
    "no thread settings": they change the timings a lot on a small machine, so the output says."""
    found = [f"{k}={os.environ[k]}" for k in THREAD_VARIABLES if k in os.environ]
    return ", ".join(found) or "no thread variables set"


def relative_error(reference, out):
    """max(|Δloss| / |loss|, max |Δg| / max |g|) between two (loss, gradient) results."""
    (l0, g0), (l1, g1) = reference, out
    return max(abs(l1 - l0) / abs(l0), np.abs(g1 - g0).max() / np.abs(g0).max())


def time_interleaved(contenders, rounds, block_s, warmup=3):
    """{name: (median ms per call, median minor page faults per call)} for contenders already set
    up (``setup`` called). Page faults show the cost of memory freshly mapped on every call."""
    per_block = {}
    for name, c in contenders.items():
        if warmup:
            c.time(warmup)                       # JAX compiles (if it did not already) here
        per_block[name] = max(1, int(block_s / max(c.time(1)[0], 1e-6)))
    names, times = list(contenders), {name: [] for name in contenders}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(contenders[name].time(per_block[name]))
    return {name: (1e3 * float(np.median([s for s, _ in t])), float(np.median([f for _, f in t])))
            for name, t in times.items()}
