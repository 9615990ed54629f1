"""Where a scheduled run's requests come from: a stored file, a Python callable, a JSONL path.

A source is evaluated completely into a temporary file *before* anything is recorded, so a
source that raises half-way leaves no file and no batch behind.
"""

from __future__ import annotations

import importlib
import inspect
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field

from batchyard.domain.schedule import local_time, parse_timezone, render_path
from batchyard.domain.schedule_records import ScheduleRecord
from batchyard.errors import InvalidInputError

#: Requests are spooled in memory up to this size, then on disk.
SPOOL_BYTES = 8 * 1024 * 1024


class FileSource(BaseModel):
    """Submit a stored input file again, as is."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["file"] = "file"
    file_id: str = Field(min_length=1, max_length=64)


class CallableSource(BaseModel):
    """Call ``package.module:function`` (or ``package.module.function``) for the requests."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["callable"] = "callable"
    target: str = Field(min_length=3, max_length=300)


class PathSource(BaseModel):
    """Read a JSONL file whose path may name the fire date (``/data/{yesterday}.jsonl``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["path"] = "path"
    path: str = Field(min_length=1, max_length=1000)


Source = FileSource | CallableSource | PathSource
#: Kinds that run code or read files on the scheduler's host.
CODE_SOURCE_KINDS = frozenset({"callable", "path"})


@dataclass(frozen=True)
class SourceContext:
    """What a callable source is told about the run it feeds."""

    schedule_id: str
    schedule_name: str
    #: The slot being run, in the schedule's time zone.
    fire_time: datetime
    endpoint: str
    model: str | None

    @property
    def date(self) -> date:
        """The fire date in the schedule's time zone."""
        return self.fire_time.date()


def context_for(schedule: ScheduleRecord, fire_time: int) -> SourceContext:
    """The context of one run."""
    fire_local = local_time(fire_time, parse_timezone(schedule.timezone))
    return SourceContext(schedule.id, schedule.name, fire_local, schedule.endpoint,
                         schedule.model)


def resolve_callable(target: str) -> Callable[..., Any]:
    """Import ``module:attr`` or ``module.attr``; InvalidInputError when it is not callable."""
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise InvalidInputError(f"callable target {target!r} needs a module and a name",
                                param="source.target")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"cannot import {target!r}: {exc}",
                                param="source.target") from exc
    if not callable(obj):
        raise InvalidInputError(f"{target!r} is not callable", param="source.target")
    return cast(Callable[..., Any], obj)


def _call(func: Callable[..., Any], ctx: SourceContext) -> Any:
    # Callables may take the context or nothing at all (a plain "build tonight's prompts").
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return func(ctx)
    takes_arg = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                    for p in params)
    return func(ctx) if takes_arg else func()


def request_line(item: Mapping[str, Any], number: int, ctx: SourceContext) -> dict[str, Any]:
    """One batch input line from a callable's item: a full line, or just a request body."""
    if not isinstance(item, Mapping):
        raise InvalidInputError(f"item {number} is a {type(item).__name__}, not a dict")
    line: dict[str, Any] = dict(item) if "body" in item else {"body": dict(item)}
    line.setdefault("custom_id", f"{ctx.schedule_id}-{number}")
    line.setdefault("method", "POST")
    line.setdefault("url", ctx.endpoint)
    body = line["body"]
    if ctx.model and isinstance(body, dict) and "model" not in body:
        line["body"] = {**body, "model": ctx.model}
    return line


def write_callable_output(items: Iterable[Mapping[str, Any]], ctx: SourceContext,
                          out: IO[bytes]) -> int:
    """Serialise every item as a JSONL line; returns how many were written."""
    count = 0
    for count, item in enumerate(items, start=1):
        out.write(orjson.dumps(request_line(item, count, ctx)) + b"\n")
    return count


def copy_path(path: Path, out: IO[bytes]) -> int:
    """Copy a JSONL file; returns how many non-blank lines it has."""
    if not path.is_file():
        raise InvalidInputError(f"source file {str(path)!r} does not exist")
    count = 0
    with path.open("rb") as src:
        for line in src:
            count += bool(line.strip())
            out.write(line)
    return count


def materialize(schedule: ScheduleRecord, fire_time: int) -> tuple[BinaryIO, int, str]:
    """Evaluate a callable/path source into a temp file: (file at offset 0, lines, filename).

    The caller closes the file. Raises whatever the source raises; nothing is recorded here.
    """
    ctx = context_for(schedule, fire_time)
    out = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES))
    try:
        kind = schedule.source.get("kind")
        if kind == "callable":
            produced = _call(resolve_callable(str(schedule.source["target"])), ctx)
            count = write_callable_output(produced, ctx, out)
        elif kind == "path":
            rendered = render_path(str(schedule.source["path"]), ctx.fire_time, schedule.id)
            count = copy_path(Path(rendered), out)
        else:
            raise InvalidInputError(f"source kind {kind!r} has nothing to materialize")
    except BaseException:
        out.close()
        raise
    out.seek(0)
    stamp = ctx.fire_time.strftime("%Y%m%dT%H%M%S")
    return out, count, f"{schedule.id}-{stamp}.jsonl"
