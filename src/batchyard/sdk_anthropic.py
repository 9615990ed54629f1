"""The SDK's ``custom_llm_provider="anthropic"`` without a server: Message Batches, OpenAI-shaped.

Anthropic has no Files API: a Message Batch carries its requests inline. So that the
OpenAI-style flow (``create_file`` then ``create_batch(input_file_id=...)``) still works:

* ``create_file`` checks the OpenAI-format JSONL line by line (JSON, a unique ``custom_id``,
  a chat or messages ``url``, and a body that has an Anthropic equivalent: the translation the
  pipeline uses, :mod:`batchyard.domain.anthropic_lines`) and keeps it **on this machine**,
  under ``<data_dir>/sdk/anthropic/files`` (``BATCHYARD_DATA_DIR``). Its id starts with
  ``file-anthropic-``; a bad line raises :class:`~batchyard.errors.JsonlError` naming it.
* ``create_batch`` translates the kept lines (or native ``requests=[{"custom_id",
  "params"}]``, or OpenAI lines given inline) into Message Batch requests, streams them from a
  temporary file as the create body, and records locally which endpoint, input file and
  metadata the batch has (Anthropic keeps no metadata). The create is sent once, never
  repeated by itself: with no idempotency key, a repeat after a lost answer would pay twice.
* ``retrieve`` / ``list`` / ``cancel`` go to Anthropic and come back as OpenAI ``Batch``
  objects through the adapter's mapping (:func:`batchyard.providers.anthropic.
  parse_message_batch`, the one the pipeline uses). Once a batch has ended, its
  ``output_file_id`` is ``<batch id>:output`` (succeeded requests) and its ``error_file_id``
  ``<batch id>:errors`` (errored, expired and canceled ones); ``file_content`` on them
  downloads the results and translates each line to an OpenAI output line. The batch's
  ``endpoint`` decides the bodies: ``/v1/chat/completions`` gives ``chat.completion``
  bodies, ``/v1/messages`` keeps Anthropic messages. A batch this machine did not create is
  reported as Anthropic describes it (endpoint ``/v1/messages``).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import orjson

from batchyard.config import HttpSettings
from batchyard.domain.anthropic_lines import (
    CHAT_URL,
    MESSAGES_URL,
    Untranslatable,
    is_native,
    to_output_line,
    to_request,
)
from batchyard.domain.backoff import retry_delay
from batchyard.errors import (
    InvalidInputError,
    JsonlError,
    ProviderError,
    ProviderNotFoundError,
)
from batchyard.providers.anthropic import AnthropicClient, AsyncAnthropicClient
from batchyard.providers.base import ProviderBatch, ProviderPage
from batchyard.sdk_models import Batch, BatchList, FileList, FileObject, batch_object

FILE_PREFIX = "file-anthropic-"
OUTPUT_SUFFIX = ":output"
ERRORS_SUFFIX = ":errors"
#: Anthropic's per-batch request limit.
MAX_REQUESTS = 100_000
_COMPLETION_WINDOW = "24h"
#: Answers that prove a create was refused, not run: sending it again cannot pay twice.
_REFUSED = frozenset({429, 529})


def is_local_file(file_id: str) -> bool:
    """A file kept on this machine by ``create_file``."""
    return file_id.startswith(FILE_PREFIX)


def results_target(file_id: str) -> tuple[str, bool] | None:
    """(batch id, errors?) for an ``output_file_id`` / ``error_file_id`` of an Anthropic batch."""
    for suffix, errors in ((OUTPUT_SUFFIX, False), (ERRORS_SUFFIX, True)):
        if file_id.endswith(suffix) and len(file_id) > len(suffix):
            return file_id[: -len(suffix)], errors
    return None


@dataclass(frozen=True)
class BatchNote:
    """What this machine remembers of a batch it created (Anthropic keeps none of it)."""

    endpoint: str
    input_file_id: str | None
    metadata: dict[str, str] | None


class LocalStore:
    """Kept input files and batch notes under ``root`` (one JSON sidecar per object)."""

    def __init__(self, root: Path) -> None:
        self.files = root / "files"
        self.batches = root / "batches"

    # -- files -------------------------------------------------------------------------------
    def save_file(self, source: BinaryIO | Path, filename: str | None, purpose: str,
                  default_max_tokens: int) -> FileObject:
        """Check every line and keep the file; a bad line raises its JsonlError."""
        if purpose != "batch":
            raise InvalidInputError("Anthropic files are batch inputs: purpose must be 'batch'",
                                    param="purpose")
        self.files.mkdir(parents=True, exist_ok=True)
        file_id = FILE_PREFIX + secrets.token_hex(12)
        data = self.files / f"{file_id}.jsonl"
        name = filename or _name_of(source)
        try:
            with _opened(source) as handle, open(data, "wb") as out:
                size, count = _copy_checked(handle, out, default_max_tokens)
        except BaseException:
            data.unlink(missing_ok=True)
            raise
        record = FileObject(id=file_id, bytes=size, created_at=int(time.time()),
                            filename=name, purpose=purpose, status="processed")
        _write_json(self.files / f"{file_id}.json", {**record.model_dump(), "requests": count})
        return record

    def file(self, file_id: str) -> FileObject:
        """A kept file's object."""
        meta = self._meta(file_id)
        return FileObject.model_validate({k: v for k, v in meta.items() if k != "requests"})

    def list_files(self, purpose: str | None = None) -> list[FileObject]:
        """Kept files, newest first."""
        if not self.files.is_dir():
            return []
        found = [self.file(path.stem) for path in self.files.glob(f"{FILE_PREFIX}*.json")]
        found = [f for f in found if purpose is None or f.purpose == purpose]
        return sorted(found, key=lambda f: (f.created_at or 0, f.id), reverse=True)

    def delete_file(self, file_id: str) -> bool:
        """Forget a kept file."""
        self._meta(file_id)
        (self.files / f"{file_id}.jsonl").unlink(missing_ok=True)
        (self.files / f"{file_id}.json").unlink(missing_ok=True)
        return True

    def content(self, file_id: str) -> bytes:
        """A kept file's bytes, as uploaded."""
        self._meta(file_id)
        return (self.files / f"{file_id}.jsonl").read_bytes()

    def _meta(self, file_id: str) -> dict[str, Any]:
        path = self.files / f"{file_id}.json"
        if not is_local_file(file_id) or "/" in file_id or not path.is_file():
            raise ProviderNotFoundError(f"No such file: {file_id} (Anthropic input files are "
                                        "kept on the machine that created them)",
                                        status=404, code="not_found_error")
        meta: dict[str, Any] = json.loads(path.read_text())
        return meta

    # -- requests ----------------------------------------------------------------------------
    def write_requests(self, out: IO[bytes], *, input_file_id: str | None,
                       requests: Iterable[Mapping[str, Any]] | None,
                       default_max_tokens: int) -> int:
        """Message Batch requests, one per line, into ``out``; returns how many."""
        if (input_file_id is None) == (requests is None):
            raise InvalidInputError("give either input_file_id or requests", param="requests")
        count = 0
        if input_file_id is not None:
            self._meta(input_file_id)
            with open(self.files / f"{input_file_id}.jsonl", "rb") as handle:
                for line_no, raw in _numbered(handle):
                    request = _translated(line_no, _parsed(line_no, raw), default_max_tokens)
                    out.write(orjson.dumps(request) + b"\n")
                    count += 1
        else:
            seen: set[str] = set()
            for line_no, item in enumerate(requests or (), start=1):
                if not isinstance(item, Mapping):
                    raise JsonlError("each request must be an object", line=line_no,
                                     param="requests")
                request = _inline(line_no, dict(item), default_max_tokens)
                _unique(line_no, request["custom_id"], seen)
                out.write(orjson.dumps(request) + b"\n")
                count += 1
        _check_count(count, "the requests list", param="requests")
        return count

    # -- batch notes -------------------------------------------------------------------------
    def note_batch(self, batch_id: str, note: BatchNote) -> None:
        """Remember what Anthropic does not keep (endpoint, input file, metadata)."""
        self.batches.mkdir(parents=True, exist_ok=True)
        _write_json(self.batches / f"{_safe(batch_id)}.json",
                    {"endpoint": note.endpoint, "input_file_id": note.input_file_id,
                     "metadata": note.metadata})

    def batch_note(self, batch_id: str) -> BatchNote | None:
        """The note of a batch created here, if any."""
        path = self.batches / f"{_safe(batch_id)}.json"
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        return BatchNote(endpoint=raw["endpoint"], input_file_id=raw.get("input_file_id"),
                         metadata=raw.get("metadata"))


def _safe(batch_id: str) -> str:
    return batch_id.replace("/", "_")


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def _name_of(source: BinaryIO | Path) -> str:
    name = source.name if isinstance(source, Path) else getattr(source, "name", None)
    return Path(name).name if isinstance(name, str) and name else "upload.jsonl"


class _opened:
    """A path opened (and closed) here, or the caller's open file (left open, from its start)."""

    def __init__(self, source: BinaryIO | Path) -> None:
        self.source = source
        self.handle: BinaryIO | None = None

    def __enter__(self) -> IO[bytes]:
        if isinstance(self.source, Path):
            self.handle = open(self.source, "rb")
            return self.handle
        return self.source

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()


def _numbered(handle: Iterable[bytes]) -> Iterable[tuple[int, bytes]]:
    """(1-based line number, line) for the non-blank lines."""
    for line_no, raw in enumerate(handle, start=1):
        if raw.strip():
            yield line_no, raw


def _copy_checked(handle: IO[bytes], out: IO[bytes], default_max_tokens: int) -> tuple[int, int]:
    size = count = 0
    seen: set[str] = set()
    for line_no, raw in enumerate(handle, start=1):
        size += len(raw)
        out.write(raw)
        if not raw.strip():
            continue
        line = _parsed(line_no, raw)
        _translated(line_no, line, default_max_tokens)
        _unique(line_no, line["custom_id"], seen)
        count += 1
    _check_count(count, "the file", param="file")
    return size, count


def _check_count(count: int, what: str, *, param: str) -> None:
    """An Anthropic batch holds 1 to MAX_REQUESTS requests."""
    if count == 0:
        raise InvalidInputError(f"no requests in {what}", param=param)
    if count > MAX_REQUESTS:
        raise InvalidInputError(f"an Anthropic batch holds at most {MAX_REQUESTS:,} requests, "
                                f"{what} has {count:,}", param=param)


def _parsed(line_no: int, raw: bytes) -> dict[str, Any]:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise JsonlError("not valid JSON", line=line_no, code="invalid_json") from exc
    if not isinstance(line, dict):
        raise JsonlError("a line must be a JSON object", line=line_no, code="invalid_json")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise JsonlError("custom_id must be a non-empty string", line=line_no,
                         code="missing_required_parameter", param="custom_id")
    return line


def _translated(line_no: int, line: dict[str, Any], default_max_tokens: int) -> dict[str, Any]:
    try:
        return to_request(line, default_max_tokens=default_max_tokens)
    except Untranslatable as exc:
        raise JsonlError(f"cannot be sent to Anthropic: {exc.message}", line=line_no,
                         code="untranslatable", param=exc.param) from exc


def _inline(line_no: int, item: dict[str, Any], default_max_tokens: int) -> dict[str, Any]:
    """A request given inline: native ``{"custom_id", "params"}`` or an OpenAI batch line."""
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise JsonlError("custom_id must be a non-empty string", line=line_no,
                         code="missing_required_parameter", param="custom_id")
    if "params" in item:
        if not isinstance(item["params"], dict):
            raise JsonlError("params must be an object", line=line_no, param="params")
        return {"custom_id": custom_id, "params": item["params"]}
    return _translated(line_no, item, default_max_tokens)


def _unique(line_no: int, custom_id: str, seen: set[str]) -> None:
    if custom_id in seen:
        raise JsonlError(f"custom_id {custom_id!r} is used twice", line=line_no,
                         code="duplicate_custom_id", param="custom_id")
    seen.add(custom_id)


# -- batches as OpenAI objects ----------------------------------------------------------------

def check_create(endpoint: str, completion_window: str) -> str:
    """The endpoint in its canonical form; refuse what a Message Batch cannot be."""
    if completion_window != _COMPLETION_WINDOW:
        raise InvalidInputError("Anthropic batches have a 24h completion window",
                                param="completion_window")
    if is_native(endpoint):
        return MESSAGES_URL
    if endpoint.strip().rstrip("/").removeprefix("/v1") == "/chat/completions":
        return CHAT_URL
    raise InvalidInputError(f"Anthropic runs /v1/chat/completions and /v1/messages, not "
                            f"{endpoint}", param="endpoint")


def openai_batch(record: ProviderBatch, note: BatchNote | None) -> Batch:
    """The OpenAI ``Batch`` for a Message Batch (plus what this machine noted of it)."""
    batch = batch_object(record)
    update: dict[str, Any] = {"completion_window": _COMPLETION_WINDOW}
    if note is not None:
        update.update(endpoint=note.endpoint, input_file_id=note.input_file_id,
                      metadata=note.metadata)
    if record.results_url is not None:
        counts = record.request_counts
        if counts.completed:
            update["output_file_id"] = record.id + OUTPUT_SUFFIX
        if counts.failed:
            update["error_file_id"] = record.id + ERRORS_SUFFIX
    return batch.model_copy(update=update)


def openai_page(page: ProviderPage[ProviderBatch], store: LocalStore) -> BatchList:
    """A page of Message Batches as an OpenAI batch list."""
    return BatchList(data=[openai_batch(b, store.batch_note(b.id)) for b in page.data],
                     first_id=page.first_id, last_id=page.last_id, has_more=page.has_more)


def translate_results(raw: IO[bytes], *, native: bool, errors: bool) -> bytes:
    """OpenAI output lines for a results JSONL: the succeeded ones, or (``errors``) the rest."""
    created = int(time.time())
    out = bytearray()
    for line in raw:
        if not line.strip():
            continue
        item = orjson.loads(line)
        succeeded = (item.get("result") or {}).get("type") == "succeeded"
        if succeeded != errors:
            out += orjson.dumps(to_output_line(item, native=native, created=created)) + b"\n"
    return bytes(out)


def endpoint_of(store: LocalStore, batch_id: str) -> str:
    """The endpoint a batch was created for (Anthropic's own when not created here)."""
    note = store.batch_note(batch_id)
    return note.endpoint if note is not None else MESSAGES_URL


# -- the calls, sync and async --------------------------------------------------------------

def _refused_wait(exc: ProviderError, attempt: int, http: HttpSettings) -> float | None:
    """Seconds to wait before sending a refused create again, or None to give up."""
    if exc.status not in _REFUSED or attempt >= http.max_attempts:
        return None
    if exc.retry_after is not None:
        return exc.retry_after if exc.retry_after <= http.max_retry_after else None
    return retry_delay(attempt, initial=http.backoff_initial, cap=http.backoff_max, jitter=0.25)


def create(client: AnthropicClient, store: LocalStore, http: HttpSettings, *, endpoint: str,
           input_file_id: str | None, requests: Iterable[Mapping[str, Any]] | None,
           metadata: dict[str, str] | None, default_max_tokens: int) -> Batch:
    """Translate, send (again only when refused), note, answer. ``client`` must not retry."""
    with tempfile.TemporaryFile() as body:
        store.write_requests(body, input_file_id=input_file_id, requests=requests,
                             default_max_tokens=default_max_tokens)
        attempt = 0
        while True:
            attempt += 1
            body.seek(0)
            try:
                record = client.create_batch(body)
                break
            except ProviderError as exc:
                if (wait := _refused_wait(exc, attempt, http)) is None:
                    raise
            time.sleep(wait)
    note = BatchNote(endpoint=endpoint, input_file_id=input_file_id, metadata=metadata)
    store.note_batch(record.id, note)
    return openai_batch(record, note)


async def acreate(client: AsyncAnthropicClient, store: LocalStore, http: HttpSettings, *,
                  endpoint: str, input_file_id: str | None,
                  requests: Iterable[Mapping[str, Any]] | None,
                  metadata: dict[str, str] | None, default_max_tokens: int) -> Batch:
    """:func:`create`, asynchronously (the translation runs in a worker thread)."""
    import anyio
    import anyio.to_thread

    with tempfile.TemporaryFile() as body:
        await anyio.to_thread.run_sync(lambda: store.write_requests(
            body, input_file_id=input_file_id, requests=requests,
            default_max_tokens=default_max_tokens))
        attempt = 0
        while True:
            attempt += 1
            body.seek(0)
            try:
                record = await client.create_batch(body)
                break
            except ProviderError as exc:
                if (wait := _refused_wait(exc, attempt, http)) is None:
                    raise
            await anyio.sleep(wait)
    note = BatchNote(endpoint=endpoint, input_file_id=input_file_id, metadata=metadata)
    store.note_batch(record.id, note)
    return openai_batch(record, note)


def results(client: AnthropicClient, store: LocalStore, file_id: str) -> bytes:
    """The content of an ``output_file_id`` / ``error_file_id``, or of a kept input file."""
    target = results_target(file_id)
    if target is None:
        return store.content(file_id)
    batch_id, errors = target
    with tempfile.TemporaryFile() as raw:
        client.download_results(batch_id, raw)
        raw.seek(0)
        return translate_results(raw, native=is_native(endpoint_of(store, batch_id)),
                                 errors=errors)


async def aresults(client: AsyncAnthropicClient, store: LocalStore, file_id: str) -> bytes:
    """:func:`results`, asynchronously."""
    import anyio.to_thread

    target = results_target(file_id)
    if target is None:
        return await anyio.to_thread.run_sync(store.content, file_id)
    batch_id, errors = target
    with tempfile.TemporaryFile() as raw:
        await client.download_results(batch_id, raw)
        raw.seek(0)
        native = is_native(endpoint_of(store, batch_id))
        return await anyio.to_thread.run_sync(
            lambda: translate_results(raw, native=native, errors=errors))


def file_list(store: LocalStore, purpose: str | None, limit: int | None,
              after: str | None) -> FileList:
    """Kept files as an OpenAI file list (paged like OpenAI: newest first, ``after`` an id)."""
    files = store.list_files(purpose)
    if after is not None:
        ids = [f.id for f in files]
        files = files[ids.index(after) + 1:] if after in ids else []
    page = files if limit is None else files[:limit]
    return FileList(data=page, first_id=page[0].id if page else None,
                    last_id=page[-1].id if page else None, has_more=len(page) < len(files))
