"""The one interface every data command talks to, with two implementations: the local service
layer over the data dir (:mod:`batchyard.cli.local`) and a running server's HTTP API
(:mod:`batchyard.cli.remote`, chosen by ``--url`` / ``BATCHYARD_URL``). So each command works
both ways, and the remote form is the OpenAI-compatible API plus our own extensions.

Keys and schedules travel as the API's JSON objects in both forms (one renderer for both).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from batchyard.cli.common import JsonObject

if TYPE_CHECKING:
    from batchyard.domain.records import BatchRecord
    from batchyard.domain.reports import FailureGroup, PartSummary



class Backend(Protocol):
    """What the data commands need, wherever the data lives."""

    #: One line saying where the data is (printed so the user knows which one is in use).
    where: str

    def create_batch(self, path: Path, *, endpoint: str, model: str | None,
                     provider: str | None) -> BatchRecord:
        """Upload a JSONL and create its batch."""

    def get_batch(self, batch_id: str) -> BatchRecord:
        """One batch (NotFound as a CommandError)."""

    def list_batches(self, limit: int) -> list[BatchRecord]:
        """Recent batches, newest first."""

    def cancel_batch(self, batch_id: str) -> BatchRecord:
        """Ask for a cancel."""

    def parts(self, batch_id: str) -> list[PartSummary]:
        """The batch's parts with their provider facts."""

    def failures(self, batch_id: str, examples: int = 3) -> list[FailureGroup]:
        """Failed requests grouped by error code."""

    def result_lines(self, batch_id: str, *, failed_only: bool) -> Iterator[bytes]:
        """OpenAI-shaped result lines (one per request, input order)."""

    def create_key(self, body: JsonObject) -> JsonObject:
        """A new virtual key (its plain text under ``key``)."""

    def list_keys(self) -> list[JsonObject]:
        """Every virtual key (never a secret)."""

    def revoke_key(self, key_id: str) -> JsonObject:
        """Revoke a key at once."""

    def create_schedule(self, spec: JsonObject) -> JsonObject:
        """A new schedule."""

    def list_schedules(self) -> list[JsonObject]:
        """Every schedule."""

    def schedule_action(self, schedule_id: str, action: str) -> JsonObject:
        """``get``, ``pause``, ``resume`` or ``delete`` a schedule."""

    def schedule_runs(self, schedule_id: str, limit: int) -> list[JsonObject]:
        """A schedule's runs, newest first."""

    def cost_report(self, query: JsonObject) -> JsonObject:
        """Spend grouped as ``query`` says (``group_by``, ``since``, ``until``, ...)."""

    def request_costs(self, batch_id: str) -> JsonObject:
        """Each request's cost in a batch."""

    def close(self) -> None:
        """Release connections."""


@contextmanager
def open_backend(url: str | None, api_key: str | None) -> Iterator[Backend]:
    """The remote backend when ``url`` is given, else the local data dir (which must exist)."""
    backend: Backend
    if url:
        from batchyard.cli.remote import RemoteBackend

        backend = RemoteBackend(url, api_key)
    else:
        from batchyard.cli.local import LocalBackend

        backend = LocalBackend.open()
    try:
        yield backend
    finally:
        backend.close()
