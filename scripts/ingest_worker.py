"""The ingest API as the stack's uvicorn processes load it (``uvicorn --app-dir scripts ingest_worker:app``).

Each worker asks the kernel for SIGTERM (a graceful shutdown: in-flight requests are answered,
the buffer is flushed) when its uvicorn master dies. uvicorn (0.54) replaces a dead worker, but
a worker never notices a dead master: after a ``kill -9`` of the master the orphaned workers kept
the listening socket, and the master supervisord started again could not bind the port.
"""

from stack_processes import exit_with_parent

from ingest_api.main import app

exit_with_parent()

__all__ = ["app"]
