"""The local backend: the service layer over this machine's data dir (or BATCHYARD_DATABASE_URL).

It never creates a database: a command that finds none says where it looked and exits
non-zero (``up``, ``serve``, ``db upgrade`` and ``demo`` create and migrate one). The schema
version is checked with one small SELECT, not a migration run.

On the embedded SQLite database, what ``status`` reads (batches, parts, failure groups) comes
through :mod:`batchyard.db.sqlite_read` (stdlib ``sqlite3``), and the service layer (SQLAlchemy,
the table models, the deployments) is built only when a command needs more: that import
alone took longer than the whole ``batchyard status`` should.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from batchyard.cli.common import JsonObject, fail, safe_url, settings

if TYPE_CHECKING:
    import sqlite3

    from batchyard.config import Settings
    from batchyard.db.migrate import SchemaState
    from batchyard.domain.records import BatchRecord
    from batchyard.domain.reports import FailureGroup, PartSummary
    from batchyard.services.container import Services


def describe_data(cfg: Settings) -> str:
    """Which database the local commands use, and why (no password)."""
    if cfg.database_url:
        return f"database {safe_url(cfg.database_url)} (BATCHYARD_DATABASE_URL)"
    origin = ("BATCHYARD_DATA_DIR" if "data_dir" in cfg.model_fields_set
              else "default; set BATCHYARD_DATA_DIR or BATCHYARD_URL to use another")
    return f"data dir {cfg.data_dir.resolve()} ({origin})"


def sqlite_path(cfg: Settings) -> Path | None:
    """The SQLite file of the embedded default, or None for a database server."""
    if cfg.database_url:
        return None
    return (cfg.data_dir / "batchyard.db").resolve()


def _nudge_on_first_use(cfg: Settings) -> Callable[[str, str], None]:
    """The broker nudge, with the broker's client imported only when a command sends one."""
    sender: list[Callable[[str, str], None]] = []

    def nudge(task: str, object_id: str) -> None:
        if not sender:
            from batchyard.broker.nudge import build_nudger

            sender.append(build_nudger(cfg))
        sender[0](task, object_id)

    return nudge


def _require_file(cfg: Settings, path: Path) -> None:
    if not path.exists():
        fail(f"no batchyard database at {path} ({describe_data(cfg)}); start one with "
             "`batchyard up` (or `batchyard db upgrade`), or point at a server with --url")


def _schema_problem(state: SchemaState, where: object) -> NoReturn:
    from batchyard.db.migrate import SchemaState

    problem = ("has no batchyard schema" if state is SchemaState.MISSING
               else "has a schema of another batchyard version")
    fail(f"the database at {where} {problem}; run `batchyard db upgrade`")


def open_services(cfg: Settings | None = None) -> Services:
    """The service layer over an existing, up-to-date database (a clear error otherwise)."""
    from batchyard.db.migrate import SchemaState, schema_state
    from batchyard.services.container import build_services

    cfg = cfg or settings()
    path = sqlite_path(cfg)
    if path is not None:
        _require_file(cfg, path)
    svc = build_services(cfg, nudge=_nudge_on_first_use(cfg))
    state = schema_state(svc.engine)
    if state is not SchemaState.CURRENT:
        svc.close()
        _schema_problem(state, path or safe_url(cfg.effective_database_url))
    return svc


class LocalBackend:
    """The :class:`~batchyard.cli.backend.Backend` over the local service layer."""

    def __init__(self, svc: Services) -> None:
        self._svc: Services | None = svc
        self.where = describe_data(svc.settings)

    @classmethod
    def open(cls) -> LocalBackend:
        """Over the database Settings point at (it must exist and be migrated): the SQLite
        file through :class:`SqliteBackend`, a database server through the service layer."""
        cfg = settings()
        path = sqlite_path(cfg)
        if path is not None:
            return SqliteBackend.open_file(cfg, path)
        return cls(open_services(cfg))

    @property
    def svc(self) -> Services:
        """The service layer."""
        assert self._svc is not None
        return self._svc

    def close(self) -> None:
        """Release connections."""
        if self._svc is not None:
            self._svc.close()

    def create_batch(self, path: Path, *, endpoint: str, model: str | None,
                     provider: str | None) -> BatchRecord:
        """Store the file, then record the batch (the workers take it from there)."""
        from batchyard.services import batches, files

        with path.open("rb") as fh:
            record = files.create_file(self.svc, owner=None, filename=path.name,
                                       purpose="batch", stream=fh)
        return batches.create_batch(self.svc, owner=None, input_file_id=record.id,
                                    endpoint=endpoint, model=model, provider=provider)

    def get_batch(self, batch_id: str) -> BatchRecord:
        """One batch."""
        from batchyard.services import batches

        return batches.get_batch(self.svc, batch_id, owner=None)

    def list_batches(self, limit: int) -> list[BatchRecord]:
        """Recent batches."""
        from batchyard.services import batches

        return list(batches.list_batches(self.svc, owner=None, limit=limit).data)

    def cancel_batch(self, batch_id: str) -> BatchRecord:
        """Ask for a cancel."""
        from batchyard.services import batches

        return batches.cancel_batch(self.svc, batch_id, owner=None)

    def parts(self, batch_id: str) -> list[PartSummary]:
        """The batch's parts."""
        from batchyard.services import reports

        return reports.list_parts(self.svc, batch_id, owner=None)

    def failures(self, batch_id: str, examples: int = 3) -> list[FailureGroup]:
        """Failed requests grouped by code."""
        from batchyard.services import reports

        return reports.failure_groups(self.svc, batch_id, owner=None, examples=examples)

    def result_lines(self, batch_id: str, *, failed_only: bool) -> Iterator[bytes]:
        """Result lines in input order."""
        from batchyard.services import reports

        return reports.iter_result_lines(self.svc, batch_id, owner=None,
                                         failed_only=failed_only)

    def create_key(self, body: JsonObject) -> JsonObject:
        """A new virtual key."""
        from batchyard.services import keys

        record, plaintext = keys.create_key(self.svc, **body)
        return {**record.to_dict(), "key": plaintext}

    def list_keys(self) -> list[JsonObject]:
        """Every virtual key, with its budget and spend."""
        from batchyard.services import costs, keys

        return costs.with_spend(self.svc, [k.to_dict() for k in keys.list_keys(self.svc)])

    def cost_report(self, query: JsonObject) -> JsonObject:
        """Spend grouped as asked (stored sums)."""
        from batchyard.services import costs

        return costs.report_object(self.svc, **query)

    def request_costs(self, batch_id: str) -> JsonObject:
        """Each request's cost in a batch."""
        from batchyard.services import costs

        return costs.request_costs_object(self.svc, batch_id)

    def revoke_key(self, key_id: str) -> JsonObject:
        """Revoke a key."""
        from batchyard.services import keys

        return keys.revoke_key(self.svc, key_id).to_dict()

    def create_schedule(self, spec: JsonObject) -> JsonObject:
        """A new schedule (the CLI acts as the master: every source kind is allowed)."""
        from batchyard.api.wire import schedule_object
        from batchyard.services import schedules

        record = schedules.create_schedule(self.svc, schedules.ScheduleSpec.model_validate(spec),
                                           owner=None)
        return schedule_object(record)

    def list_schedules(self) -> list[JsonObject]:
        """Every schedule."""
        from batchyard.api.wire import schedule_object
        from batchyard.services import schedules

        return [schedule_object(r) for r in schedules.list_schedules(self.svc, owner=None)]

    def schedule_action(self, schedule_id: str, action: str) -> JsonObject:
        """get / pause / resume / delete."""
        from batchyard.api.wire import schedule_object
        from batchyard.services import schedules

        act = {"get": schedules.get_schedule, "pause": schedules.pause_schedule,
               "resume": schedules.resume_schedule, "delete": schedules.delete_schedule}[action]
        return schedule_object(act(self.svc, schedule_id, owner=None))

    def schedule_runs(self, schedule_id: str, limit: int) -> list[JsonObject]:
        """A schedule's runs."""
        from batchyard.api.wire import schedule_run_object
        from batchyard.services import schedules

        return [schedule_run_object(r)
                for r in schedules.list_runs(self.svc, schedule_id, owner=None, limit=limit)]


class SqliteBackend(LocalBackend):
    """The local backend on the embedded SQLite file: what ``status`` and ``results`` read,
    over ``sqlite3`` (:mod:`batchyard.db.sqlite_read`); the service layer is built on first
    use by any other call (writes, keys, schedules, cost reports)."""

    def __init__(self, cfg: Settings, conn: sqlite3.Connection) -> None:
        self._svc = None
        self._cfg = cfg
        self._conn = conn
        self.where = describe_data(cfg)

    @classmethod
    def open_file(cls, cfg: Settings, path: Path) -> SqliteBackend:
        """Over the SQLite file at ``path`` (it must exist and be migrated)."""
        from batchyard.db import sqlite_read
        from batchyard.db.migrate import SchemaState

        _require_file(cfg, path)
        conn = sqlite_read.connect(path)
        state = sqlite_read.schema_state(conn)
        if state is not SchemaState.CURRENT:
            conn.close()
            _schema_problem(state, path)
        return cls(cfg, conn)

    @property
    def svc(self) -> Services:
        """The service layer, built on first use."""
        if self._svc is None:
            self._svc = open_services(self._cfg)
        return self._svc

    def close(self) -> None:
        """Release connections."""
        self._conn.close()
        super().close()

    def get_batch(self, batch_id: str) -> BatchRecord:
        """One batch."""
        from batchyard.db import sqlite_read
        from batchyard.errors import NotFoundError

        record = sqlite_read.read_batch(self._conn, batch_id)
        if record is None:  # the service layer's error, word for word
            raise NotFoundError(f"No such Batch object: {batch_id}", param="batch_id")
        return record

    def list_batches(self, limit: int) -> list[BatchRecord]:
        """Recent batches."""
        from batchyard.db import sqlite_read

        return sqlite_read.recent_batches(self._conn, limit)

    def parts(self, batch_id: str) -> list[PartSummary]:
        """The batch's parts."""
        from batchyard.db import sqlite_read

        self.get_batch(batch_id)
        return sqlite_read.parts(self._conn, batch_id)

    def failures(self, batch_id: str, examples: int = 3) -> list[FailureGroup]:
        """Failed requests grouped by code."""
        from batchyard.db import sqlite_read

        self.get_batch(batch_id)
        return sqlite_read.failures(self._conn, batch_id, examples)

    def result_lines(self, batch_id: str, *, failed_only: bool) -> Iterator[bytes]:
        """Result lines in input order."""
        from batchyard.db import sqlite_read

        self.get_batch(batch_id)
        return sqlite_read.result_lines(self._conn, batch_id, failed_only=failed_only)

    def request_costs(self, batch_id: str) -> JsonObject:
        """Each request's cost in a batch."""
        from batchyard.db import sqlite_read
        from batchyard.domain.pricing import request_costs_object

        self.get_batch(batch_id)
        return request_costs_object(batch_id, sqlite_read.request_costs(self._conn, batch_id))
