"""Completion webhooks: announce a batch's end, then deliver the signed event until a 2xx.

:func:`announce_batch_end` is idempotent (the event id is derived from batch and status and
its first attempt row is unique), so the pipeline, the scheduler and a sweep may all call it.
Each POST is one ``webhook_deliveries`` row; a failed attempt schedules the next one with
exponential backoff until ``webhook_max_attempts``. Delivery is driven by the scheduler tick
(:func:`deliver_due`), so a crash between attempts only delays the next one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy.exc import IntegrityError

from batchyard.config import Settings
from batchyard.db import schedules as repo
from batchyard.domain.backoff import retry_delay
from batchyard.domain.schedule import TERMINAL_BATCH_STATUSES
from batchyard.domain.schedule_records import WebhookDeliveryRecord
from batchyard.domain.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    IPAddress,
    WebhookAllowList,
    build_event,
    encode_event,
    event_id_for,
    literal_address,
    refused_addresses,
    signature_header,
    webhook_host,
)
from batchyard.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from batchyard.domain.records import BatchRecord
    from batchyard.services.container import Services

logger = logging.getLogger(__name__)

USER_AGENT = "batchyard-webhooks/1"
#: The sweep looks this far back for ended batches with a metadata webhook.
SWEEP_LOOKBACK_SECONDS = 86_400.0
#: Most POSTs one tick makes at the same time.
MAX_PARALLEL_POSTS = 8


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _plain(value: Any) -> Any:
    """Records may hold dataclasses or pydantic models; events want plain JSON."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    return str(value)


def _ended_at(batch: BatchRecord, status: str) -> int | None:
    value = getattr(batch, f"{status}_at", None)
    return int(value) if value is not None else None


def webhook_target(svc: Services, batch: BatchRecord) -> tuple[str, str | None] | None:
    """(url, schedule_id) for a batch: its schedule's webhook, else ``metadata.webhook_url``."""
    with svc.sessions() as session:
        schedule = repo.schedule_for_batch(session, batch.id)
    if schedule is not None and schedule.webhook_url:
        return schedule.webhook_url, schedule.id
    url = _metadata_url(getattr(batch, "metadata", None))
    if url is not None:
        return url, schedule.id if schedule is not None else None
    return None


def announce_batch_end(svc: Services, batch_id: str, *, now: float | None = None) -> str | None:
    """Queue the end-of-batch event for delivery; returns its id (None: no webhook / not ended).

    Safe to call any number of times: the first attempt row of an event is unique.
    """
    from batchyard.services import batches  # the pipeline's service; imported when needed

    now_ts = _now(now)
    try:
        batch = batches.get_batch(svc, batch_id, owner=None)
    except NotFoundError:
        return None
    status = str(batch.status)
    target = webhook_target(svc, batch) if status in TERMINAL_BATCH_STATUSES else None
    if target is None:
        return None
    event = build_event(batch_id=batch_id, status=status,
                        request_counts=_plain(getattr(batch, "request_counts", None)) or {},
                        usage=_plain(getattr(batch, "usage", None)),
                        created_at=_ended_at(batch, status) or int(now_ts))
    queue_event(svc, event, url=target[0], schedule_id=target[1], now=now_ts)
    return str(event["id"])


def queue_event(svc: Services, event: dict[str, Any], *, url: str, schedule_id: str | None,
                now: float | None = None) -> bool:
    """Record the first delivery attempt of ``event``; False when it was queued before."""
    now_ts = _now(now)
    try:
        with svc.sessions.begin() as session:
            repo.insert_delivery(
                session, event_id=event["id"], attempt=1, batch_id=event["data"]["id"],
                schedule_id=schedule_id, event_type=event["type"], url=url,
                payload=encode_event(event).decode(), status="pending", due_at=now_ts,
                created_at=now_ts)
    except IntegrityError:
        return False
    logger.info("webhook.queued", extra={"event_id": event["id"],
                                         "batch_id": event["data"]["id"]})
    return True


def _metadata_url(metadata: Mapping[str, Any] | None) -> str | None:
    url = (metadata or {}).get("webhook_url")
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def sweep_ended_batches(svc: Services, *, now: float | None = None,
                        lookback: float = SWEEP_LOOKBACK_SECONDS) -> int:
    """Announce recently ended batches whose metadata names a webhook; returns how many.

    This is what makes metadata webhooks independent of the pipeline: it finds the batches
    itself, and a crash between a batch ending and its announcement only delays the event.
    """
    now_ts = _now(now)
    with svc.sessions() as session:
        ended = repo.ended_batches_since(session, since=now_ts - lookback)
        wanted = {event_id_for(b, s): b for b, s, meta in ended if _metadata_url(meta)}
        known = repo.events_with_deliveries(session, list(wanted))
    fresh = [batch_id for event_id, batch_id in wanted.items() if event_id not in known]
    return sum(announce_batch_end(svc, batch_id, now=now_ts) is not None for batch_id in fresh)


def _secret_for(svc: Services, delivery: WebhookDeliveryRecord) -> str | None:
    if delivery.schedule_id is not None:
        with svc.sessions() as session:
            schedule = repo.get_schedule(session, delivery.schedule_id)
        if schedule is not None and schedule.webhook_secret is not None:
            return schedule.webhook_secret.get_secret_value()
    secret = svc.settings.schedules.webhook_secret
    return secret.get_secret_value() if secret is not None else None


def signed_headers(body: bytes, *, event_id: str, secret: str | None,
                   timestamp: int | None = None) -> dict[str, str]:
    """Headers of one POST (no signature header when no secret is configured)."""
    headers = {"content-type": "application/json", "user-agent": USER_AGENT,
               EVENT_ID_HEADER: event_id}
    if secret:
        stamp = int(time.time()) if timestamp is None else timestamp
        headers[SIGNATURE_HEADER] = signature_header(secret, stamp, body)
    return headers


def resolve_addresses(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (what the webhook would connect to)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


#: How webhook hosts are resolved (tests put a fake DNS here).
Resolver = Callable[[str, int], list[IPAddress]]


def allow_list(settings: Settings) -> WebhookAllowList:
    """The operator's webhook allow-list."""
    return WebhookAllowList.parse(settings.schedules.webhook_allow)


def check_webhook_url(settings: Settings, url: str, *, param: str = "webhook_url",
                      resolve: Resolver | None = None, must_resolve: bool = False
                      ) -> list[IPAddress] | None:
    """Refuse (400) a webhook URL aimed at internal addresses; returns the checked addresses.

    None means "connect by name": the host is on the allow-list, or (unless ``must_resolve``)
    it does not resolve now, which is checked again at send time.
    """
    try:
        host, port = webhook_host(url)
    except ValueError as exc:
        raise InvalidInputError(f"Invalid value for '{param}': {exc}.", param=param,
                                code="invalid_webhook_url") from None
    allow = allow_list(settings)
    if allow.allows_host(host):
        return None
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = (resolve or resolve_addresses)(host, port)
        except (OSError, UnicodeError, ValueError):
            if must_resolve:
                raise InvalidInputError(f"Webhook host {host!r} does not resolve.", param=param,
                                        code="invalid_webhook_url") from None
            return None
    if refused_addresses(host, addresses, allow):
        raise InvalidInputError(
            f"Invalid value for '{param}': webhooks may not be sent to internal addresses "
            "(loopback, private, link-local, multicast, reserved); an operator can allow a "
            "host or network with BATCHYARD_SCHEDULES__WEBHOOK_ALLOW.", param=param,
            code="webhook_url_not_allowed")
    return addresses


def _pinned(url: str, address: IPAddress) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL rewritten to connect to ``address``, with the Host header and TLS name kept."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    host_header = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc)), {"host": host_header}, extensions


def post_event(client: httpx.Client, url: str, body: bytes, *, event_id: str,
               secret: str | None, settings: Settings,
               resolve: Resolver | None = None) -> tuple[int | None, str | None]:
    """POST once (redirects are not followed): (HTTP status or None, error text or None).

    The host is resolved and checked here, and the POST connects to the checked address, so
    a name that changed to an internal address since the URL was accepted is refused.
    """
    try:
        addresses = check_webhook_url(settings, url, resolve=resolve, must_resolve=True)
    except InvalidInputError as exc:
        return None, exc.message[:500]
    headers = signed_headers(body, event_id=event_id, secret=secret)
    target, extensions = url, dict[str, Any]()
    if addresses:
        target, host_header, extensions = _pinned(url, addresses[0])
        headers.update(host_header)
    try:
        response = client.post(target, content=body, headers=headers, extensions=extensions,
                               follow_redirects=False)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


def send_attempt(svc: Services, delivery_id: int, *, client: httpx.Client,
                 now: float | None = None) -> WebhookDeliveryRecord | None:
    """Claim one due attempt, POST it, record the outcome and queue a retry if it failed."""
    now_ts = _now(now)
    cfg = svc.settings.schedules
    with svc.sessions.begin() as session:
        delivery = repo.claim_delivery(session, delivery_id, now=now_ts,
                                       stale_before=now_ts - cfg.webhook_stale_seconds)
    if delivery is None:
        return None  # someone else took it, or it is not due
    code, error = post_event(client, delivery.url, delivery.payload.encode(),
                             event_id=delivery.event_id, secret=_secret_for(svc, delivery),
                             settings=svc.settings)
    _record_outcome(svc, delivery, code, error, now_ts)
    with svc.sessions() as session:
        return next(d for d in repo.list_deliveries(session, event_id=delivery.event_id)
                    if d.id == delivery_id)


def _record_outcome(svc: Services, delivery: WebhookDeliveryRecord, code: int | None,
                    error: str | None, now_ts: float) -> None:
    cfg = svc.settings.schedules
    retry = error is not None and delivery.attempt < cfg.webhook_max_attempts
    with svc.sessions.begin() as session:
        repo.finish_delivery(session, delivery.id, status="failed" if error else "delivered",
                             now=now_ts, response_status=code, error=error)
        if retry:
            delay = retry_delay(delivery.attempt, initial=cfg.webhook_backoff_initial,
                                cap=cfg.webhook_backoff_max)
            _queue_retry(session, delivery, due_at=now_ts + delay)
    extra = {"event_id": delivery.event_id, "attempt": delivery.attempt, "status": code}
    if error is None:
        logger.info("webhook.delivered", extra=extra)
    elif retry:
        logger.warning("webhook.attempt_failed", extra=extra)
    else:
        logger.error("webhook.gave_up", extra=extra)


def _queue_retry(session: Any, delivery: WebhookDeliveryRecord, *, due_at: float) -> None:
    try:
        with session.begin_nested():
            repo.insert_delivery(
                session, event_id=delivery.event_id, attempt=delivery.attempt + 1,
                batch_id=delivery.batch_id, schedule_id=delivery.schedule_id,
                event_type=delivery.event_type, url=delivery.url, payload=delivery.payload,
                status="pending", due_at=due_at, created_at=due_at)
    except IntegrityError:
        pass  # a stale-claim re-send already queued it


def deliver_due(svc: Services, *, now: float | None = None,
                limit: int = 100) -> list[WebhookDeliveryRecord]:
    """Send every attempt that is due (a few at a time); returns the attempts made."""
    now_ts = _now(now)
    with svc.sessions() as session:
        due = repo.due_deliveries(
            session, now=now_ts, limit=limit,
            stale_before=now_ts - svc.settings.schedules.webhook_stale_seconds)
    if not due:
        return []
    timeout = svc.settings.schedules.webhook_timeout_seconds
    with httpx.Client(timeout=timeout) as client, \
            ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_POSTS, len(due))) as pool:
        done = pool.map(lambda i: send_attempt(svc, i, client=client, now=now_ts), due)
        return [d for d in done if d is not None]


def list_deliveries(svc: Services, *, batch_id: str | None = None,
                    event_id: str | None = None) -> list[WebhookDeliveryRecord]:
    """Every attempt for a batch or an event, in order."""
    with svc.sessions() as session:
        return repo.list_deliveries(session, batch_id=batch_id, event_id=event_id)


def sample_event(*, now: float | None = None) -> dict[str, Any]:
    """A made-up ``batch.completed`` event for trying a receiver."""
    return build_event(batch_id="batch_test_0000000000000000", status="completed",
                       request_counts={"total": 3, "completed": 3, "failed": 0},
                       usage={"input_tokens": 42, "output_tokens": 17, "total_tokens": 59},
                       created_at=int(_now(now)))


def send_test_event(url: str, *, secret: str | None, settings: Settings,
                    timeout: float = 10.0) -> tuple[int | None, str | None]:
    """POST a signed sample event once: (HTTP status or None, error or None)."""
    event = sample_event()
    with httpx.Client(timeout=timeout) as client:
        return post_event(client, url, encode_event(event), event_id=str(event["id"]),
                          secret=secret, settings=settings)
