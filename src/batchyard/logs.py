"""Logging set-up for every process (API, worker, beat, CLI): text or JSON lines on stderr.

Log calls name a stable event and put ids in ``extra=`` (``logger.info("batch.created",
extra={"batch_id": ...})``); both formats show those fields. A field whose name says it
holds a secret (ending in key, secret, password, token or authorization) is never printed,
whatever its value.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
import time
from typing import Any

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")

_SECRET_ENDINGS = ("key", "secret", "password", "token", "authorization")
# Attributes every LogRecord has; anything else came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    out = {}
    for name, value in vars(record).items():
        if name in _STANDARD or name.startswith("_"):
            continue
        out[name] = "***" if name.lower().endswith(_SECRET_ENDINGS) else value
    return out


class TextFormatter(logging.Formatter):
    """``2026-01-01 12:00:00 INFO batchyard.pipeline batch.created batch_id=batch_x``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s",
                         datefmt="%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            fields = " ".join(f"{k}={v}" for k, v in extras.items())
            head, sep, tail = line.partition("\n")  # keep a traceback after the fields
            line = f"{head} {fields}{sep}{tail}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (the event), then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        data.update(_extras(record))
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (a stream captured when
    logging was configured may be closed since, e.g. under a test runner)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def dict_config(level: str = "INFO", fmt: str = "text", *,
                access_log: bool = False) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict (uvicorn takes it as ``log_config`` too)."""
    formatter = "batchyard.logs.JsonFormatter" if fmt == "json" else "batchyard.logs.TextFormatter"
    # Celery's per-task lines (received / succeeded, every beat tick) and Alembic's plugin
    # set-up would drown the pipeline's own events; they show with --log-level DEBUG.
    chatty = "DEBUG" if level.upper() == "DEBUG" else "WARNING"
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {"stderr": {"class": "batchyard.logs.StderrHandler",
                                "formatter": "default"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "INFO" if access_log else "WARNING", "handlers": [],
                               "propagate": True},
            # A line per HTTP call to a provider would drown the pipeline's own events.
            "httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"},
            "celery": {"level": chatty}, "alembic.runtime.plugins": {"level": chatty},
        },
    }


def configure(level: str = "INFO", fmt: str = "text", *, access_log: bool = False) -> None:
    """Send every log record of this process to stderr in ``fmt`` at ``level``."""
    logging.config.dictConfig(dict_config(level, fmt, access_log=access_log))
