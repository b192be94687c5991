"""How every console script ends when the reader of its output goes away (``eventlake-status | head -1``).

A reader that exits before a command has written everything (``head``, ``less`` quit early) closes
the pipe, and the command's next write to stdout raises :class:`BrokenPipeError`. Python's
documentation (https://docs.python.org/3/library/signal.html#note-on-sigpipe) recommends catching
it, pointing stdout at ``/dev/null`` so that the interpreter's own flush at exit does not raise it
again, and exiting with a status of one's choice: here 141 (128 + SIGPIPE), what a shell reports for
a program SIGPIPE ended (``yes | head -1`` under ``set -o pipefail``), with nothing on stderr.

SIGPIPE's disposition stays as Python sets it (ignored): restoring the default, the other common
answer, would also kill a command whose HTTP connection breaks while it writes to it
(``eventlake-replay``, ``eventlake-erase``), which the same documentation warns against. A
:class:`BrokenPipeError` that does not come from a closed stdout (such a connection) is re-raised.
"""

from __future__ import annotations

import functools
import os
import select
import signal
import sys
from collections.abc import Callable
from typing import ParamSpec

P = ParamSpec("P")

#: Exit status of a command whose stdout was closed by its reader: 128 + SIGPIPE (13), i.e. 141.
CLOSED_PIPE_STATUS = 128 + int(signal.SIGPIPE)


def stdout_closed() -> bool:
    """Whether ``sys.stdout`` is a pipe or socket whose reading end is closed (``poll`` reports an
    error or hang-up on it). ``False`` for a terminal, a regular file, or a stream without a file
    descriptor (pytest's capture)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def quiet_on_closed_pipe(main: Callable[P, int]) -> Callable[P, int]:
    """Wrap a console script's ``main`` (returning its exit status) so that a stdout closed by its
    reader ends it quietly with :data:`CLOSED_PIPE_STATUS` instead of a traceback.

    Whatever ``main`` wrote is flushed before the wrapper returns, so a pipe closed after the last
    write is noticed here too (not at interpreter exit, where Python would print "Exception
    ignored" and exit 120); ``argparse``'s ``--help`` and errors (``SystemExit``) included.

    Raises:
        BrokenPipeError: when stdout is still open (another pipe or a socket broke).
        Exception: whatever ``main`` raises otherwise.
    """

    @functools.wraps(main)
    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            try:
                return main(*args, **kwargs)
            finally:
                if sys.stdout is not None:
                    sys.stdout.flush()
        except BrokenPipeError:
            if not stdout_closed():
                raise
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere at exit
            os.close(devnull)
            return CLOSED_PIPE_STATUS

    return run
