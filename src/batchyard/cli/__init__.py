"""The ``batchyard`` command line: one module per command group, assembled in :mod:`.app`.

Commands reach data through :mod:`.backend` (the local service layer, or a server's HTTP API
with ``--url``), never through SQL of their own (on the embedded SQLite file, ``status`` and
``results`` read through :mod:`batchyard.db.sqlite_read`, for a fast start).
"""

from batchyard.cli.app import app, main

__all__ = ["app", "main"]
