"""Broker connections shared by producers (nudges) and workers: URL, transport, options.

The embedded default is kombu's SQLAlchemy transport on a SQLite file, tuned here (WAL mode,
faster polling, a cheaper publish); Redis publishes reuse one client per channel.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.transport import redis as redis_transport
from kombu.transport.sqlalchemy import Channel as SqlaChannel
from kombu.transport.sqlalchemy import Transport
from kombu.utils.json import dumps as json_dumps
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from batchyard.config import Settings


def broker_options(settings: Settings) -> dict[str, object]:
    """Transport options shared by producers and workers."""
    if settings.effective_broker_url.startswith("sqla+"):
        return {}  # kombu's SQLAlchemy transport hands every option to create_engine
    return {"visibility_timeout": 3600}


def broker_connection(settings: Settings) -> tuple[str, type[Transport] | None]:
    """The broker URL to give Celery, and the transport class to force (embedded only).

    kombu's SQLAlchemy transport polls its queues once a second and takes no option to
    change that; the embedded broker uses a subclass that polls faster (a quarter tick,
    0.05-0.5 s). Naming a transport class works only with the ``sqla+`` prefix removed.
    """
    url = settings.effective_broker_url
    if not url.startswith("sqla+"):
        return url, None
    interval = min(0.5, max(0.05, settings.pipeline.tick_seconds / 4))
    channel = _WalSqlaChannel if url.startswith("sqla+sqlite") else Transport.Channel
    transport = type("EmbeddedSqlaTransport", (Transport,),
                     {"polling_interval": interval, "Channel": channel})
    return url.removeprefix("sqla+"), transport


class _WalSqlaChannel(SqlaChannel):
    """kombu's SQLAlchemy channel on a SQLite file in WAL mode with synchronous=NORMAL.

    With SQLite's defaults (rollback journal, full sync) every nudge fsynced the broker file
    twice under its write lock, so concurrent creates queued behind each other's fsyncs (a
    50 ms median ``POST /v1/batches`` in embedded mode). In WAL mode a commit survives a
    process crash; only a power cut can lose the last few, and a lost nudge is what the
    sweep exists for (the batch row, in its own database, is the truth).
    """

    _queue_ids: dict[str, int] | None = None

    def _engine_from_config(self) -> Any:
        engine = super()._engine_from_config()
        event.listen(engine, "connect", broker_pragmas)
        return engine

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # kombu's own _put loads the queue row and inserts through the ORM unit of work on
        # every message; queue rows are never deleted, so their ids are cached and the
        # message is one Core INSERT (columns left out take the model's defaults).
        if self._queue_ids is None:
            self._queue_ids = {}
        queue_id = self._queue_ids.get(queue)
        if queue_id is None:
            queue_id = self._queue_ids[queue] = int(self._get_or_create(queue).id)
        insert = self.message_cls.__table__.insert()
        try:
            self.session.execute(insert, {"payload": json_dumps(message), "queue_id": queue_id})
            self.session.commit()
        except OperationalError:
            self.session.rollback()  # as kombu: the publish fails and may be retried
            raise


def broker_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """The embedded broker file's settings, on every connection to it (WAL, NORMAL sync)."""
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def configure_broker(app: Celery, settings: Settings) -> None:
    """Point a Celery app at the broker of ``settings`` (URL, transport, options)."""
    url, transport = broker_connection(settings)
    app.conf.broker_url = url
    if transport is not None:
        app.conf.broker_transport = transport
    app.conf.broker_transport_options = broker_options(settings)
    app.conf.broker_connection_retry_on_startup = True


class _PublishingRedisChannel(redis_transport.Channel):
    """A Redis channel that keeps one client object for its publishes.

    kombu builds a new ``redis.Redis`` (over the same connection pool) for every message it
    sends; building one cost as much CPU as the rest of a ``POST /v1/batches``'s nudge. A
    channel is used by one thread at a time (Celery's producer pool hands each publisher its
    own connection) and the client only borrows pooled connections, so reusing it is safe.
    """

    _publish_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        if self._publish_client is None:
            self._publish_client = super()._create_client()
        return self._publish_client


class _PublishingRedisTransport(redis_transport.Transport):
    Channel = _PublishingRedisChannel


def configure_producer(app: Celery, settings: Settings) -> None:
    """:func:`configure_broker`, plus the cheaper Redis publish for a producer-only app."""
    configure_broker(app, settings)
    if app.conf.broker_url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport = _PublishingRedisTransport
