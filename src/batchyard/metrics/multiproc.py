"""Multiprocess mode set-up, importable before ``prometheus_client`` is.

``prometheus_client`` decides at import time whether values live in memory or in per-process
files, so the command that forks API or worker processes calls :func:`prepare` first.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(default_dir: Path) -> Path:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at a clean directory and return it.

    An operator's own setting wins; either way the files of a previous run are removed, since
    counters of dead processes from an earlier start would otherwise be summed in forever.
    """
    path = Path(os.environ.get(ENV) or default_dir)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[ENV] = str(path)
    return path


def enabled() -> bool:
    """Whether this process writes its metrics to the shared directory."""
    return bool(os.environ.get(ENV))
