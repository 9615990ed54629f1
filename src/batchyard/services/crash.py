"""A test-only crash hook: kill -9 the own process at a named pipeline point.

Crash-safety tests set ``Settings.crash_at`` (``BATCHYARD_CRASH_AT``) on a worker, let it die
at exactly that point, restart it without the setting, and check nothing was done twice.
"""

from __future__ import annotations

import logging
import os
import signal

from batchyard.config import Settings

logger = logging.getLogger(__name__)

#: The named points (checked by tests; an unknown name is a typo, never a silent no-op).
CRASH_POINTS = frozenset({"mid_prepare", "after_upload", "after_create", "mid_poll",
                          "mid_ingest"})


def crash_point(settings: Settings, name: str) -> None:
    """SIGKILL this process when ``settings.crash_at`` names this point."""
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    if settings.crash_at == name:
        logger.warning("crash_hook.kill", extra={"point": name})
        os.kill(os.getpid(), signal.SIGKILL)
