"""Handler output as Lambda treats it: written to a pipe that another process drains.

On Lambda a function's standard output (its logs, its EMF metrics) is a pipe the runtime reads;
writing costs a ``write(2)`` into a pipe, not into ``/dev/null``. The benchmarks do the same:

- ``drained_stdout()``: while it is active, file descriptor 1 of this process is the write end
  of a pipe whose read end a separate ``cat`` process empties. It works at the descriptor level
  (``os.dup2``), so it also catches writers that hold their own reference to ``sys.stdout``,
  such as Powertools' ``Logger``, which takes ``sys.stdout`` when it is constructed.
- ``drain_pipe()``: the write end of such a pipe, to hand to a child process as its stdout or
  stderr (``subprocess.Popen(..., stderr=fd)``) instead of ``subprocess.DEVNULL``.

Used by the benchmarks only. Import it from a benchmark script (``bench/`` is on its path) or,
in a worker started with ``python -c``, after putting ``BENCH_DIR`` on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# Read until end of file and throw away; used where there is no `cat`.
_DRAIN = "import os\nwhile os.read(0, 1 << 16):\n    pass\n"


def _drain_command() -> list[str]:
    cat = shutil.which("cat")
    return [cat] if cat else [sys.executable, "-c", _DRAIN]


@contextlib.contextmanager
def drain_pipe() -> Iterator[int]:
    """The write end of a pipe that a separate process reads to its end and discards.

    Pass it to children as their stdout or stderr. It is closed here on exit; the drain ends
    once every process that holds the write end (children included) has closed it.
    """
    read_fd, write_fd = os.pipe()
    try:
        drain = subprocess.Popen(
            _drain_command(), stdin=read_fd, stdout=subprocess.DEVNULL, close_fds=True
        )
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)  # the drain has its own copy
    try:
        yield write_fd
    finally:
        os.close(write_fd)
        drain.wait()


def _flush() -> None:
    for stream in {id(s): s for s in (sys.stdout, sys.__stdout__) if s is not None}.values():
        with contextlib.suppress(ValueError, OSError):
            stream.flush()


@contextlib.contextmanager
def drained_stdout() -> Iterator[None]:
    """Point this process's file descriptor 1 at a drained pipe; restore it on exit.

    Whatever writes to fd 1 meanwhile (``print``, ``sys.stdout``, a logger that kept
    ``sys.stdout``, a child that inherits fd 1) goes into the pipe; Python's buffers are
    flushed on entry, so earlier output still reaches the terminal, and on exit, so the
    handlers' output does not.
    """
    _flush()
    saved = os.dup(1)
    try:
        with drain_pipe() as write_fd:
            os.dup2(write_fd, 1)
            try:
                yield
            finally:
                _flush()
                os.dup2(saved, 1)  # drops this process's last hold on the pipe's write end
    finally:
        os.close(saved)


def peak_reset() -> None:
    """Reset this process's peak resident memory (``VmHWM``), so that what follows is measured
    alone."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def rss(field: str) -> int:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``, ``VmHWM``), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0
