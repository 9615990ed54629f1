"""Parts on Anthropic deployments: create without a file, find a lost create, read results.

Anthropic has no Files API and no batch metadata, so two things differ from OpenAI/Azure:

* **Create.** The part's request rows are translated (OpenAI chat lines to Messages params,
  native ``/v1/messages`` lines as they are) into a temporary JSONL which the adapter
  streams as the create body.
* **Finding a create whose answer was lost.** There is no tag to look for. Instead the
  provider's batches created inside the *intent window* (from the recorded ``submitting``
  intent, less a clock-skew allowance, until now) are listed, and those whose request count
  equals the part's and which no other part owns are the candidates. A candidate that has
  ended shows its requests: a sample of its result lines must all be this part's
  custom_ids. One such batch is the lost create: it is adopted. A candidate still running
  cannot be told from another part's batch of the same size, so the look-up waits for it
  to end. Two batches that both carry this part's requests (it was already created twice):
  nothing is guessed, the part is parked with them in ``last_error`` and an event row, for
  an operator. No candidate of ours: if the intent is younger than
  ``provider_list_lag_seconds`` the list may not show the batch yet, so the look-up is
  repeated later; after that the create is sent again.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from itertools import chain
from typing import IO

import orjson

from batchyard.db import parts
from batchyard.db.models import PartRow
from batchyard.domain.anthropic_lines import Untranslatable, is_native, to_output_line, to_request
from batchyard.domain.inputs import RequestBlock
from batchyard.domain.lifecycle import PartStatus
from batchyard.domain.routing import Deployment
from batchyard.errors import JsonlError, ProviderTransientError
from batchyard.providers.anthropic import AnthropicClient
from batchyard.providers.base import ProviderBatch
from batchyard.services.container import Services

logger = logging.getLogger(__name__)

#: Anthropic's per-batch limits.
MAX_REQUESTS = 100_000
MAX_BODY_BYTES = 256 * 1024 * 1024
#: Share of the body limit left to input lines: translation may make a line longer.
_BODY_SHARE = 0.85
#: Result lines read to tell whose requests an ended candidate batch ran.
_SAMPLE = 50
#: How long a part with an ambiguous lost create stays parked before it is looked at again.
PARK_SECONDS = 24 * 3600.0


class AmbiguousCreate(Exception):
    """Several provider batches could be the part's lost create."""

    def __init__(self, candidates: list[str]) -> None:
        super().__init__(", ".join(candidates))
        self.candidates = candidates


def is_anthropic(svc: Services, deployment_id: str | None) -> bool:
    """Whether the part's deployment is an Anthropic one."""
    return bool(deployment_id) and svc.deployments.get(str(deployment_id)).provider == \
        "anthropic"


def part_limits(max_requests: int, max_bytes: int) -> tuple[int, int]:
    """Part sizes that fit an Anthropic batch (and the configured limits)."""
    return min(max_requests, MAX_REQUESTS), min(max_bytes, int(MAX_BODY_BYTES * _BODY_SHARE))


def routes_to_anthropic(svc: Services, model: str | None, provider: str | None) -> bool:
    """Whether any deployment that may run this model is an Anthropic one."""
    return any(dep.provider == "anthropic" for dep in svc.deployments.for_model(model, provider))


def check_translatable(line_no: int, raw: bytes, default_max_tokens: int) -> None:
    """Raise the line's JsonlError when it has no Anthropic equivalent."""
    try:
        to_request(orjson.loads(raw), default_max_tokens=default_max_tokens)
    except Untranslatable as exc:
        raise JsonlError(f"cannot be sent to Anthropic: {exc.message}", line=line_no,
                         code="untranslatable", param=exc.param) from exc


def prepare_blocks(svc: Services, model: str | None, provider: str | None,
                   blocks: Iterator[RequestBlock]) -> tuple[Iterator[RequestBlock], int, int]:
    """(blocks, part max requests, part max bytes) for a batch being split: when its model
    is routed to Anthropic, parts fit an Anthropic batch and every line is checked to be
    translatable (a line that is not fails the batch with its number, before any send)."""
    cfg = svc.settings.pipeline
    first = next(blocks, None)
    if first is None:
        return blocks, cfg.part_max_requests, cfg.part_max_bytes
    rest = chain([first], blocks)
    if not routes_to_anthropic(svc, model or first.models[0], provider):
        return rest, cfg.part_max_requests, cfg.part_max_bytes
    max_requests, max_bytes = part_limits(cfg.part_max_requests, cfg.part_max_bytes)
    return _checked(rest, cfg.anthropic_default_max_tokens), max_requests, max_bytes


def _checked(blocks: Iterator[RequestBlock], default_max_tokens: int) -> Iterator[RequestBlock]:
    for block in blocks:
        for line_no, raw in zip(block.line_nos, block.raws, strict=True):
            check_translatable(line_no, raw, default_max_tokens)
        yield block


# -- the intent window -----------------------------------------------------------------------

def intent_at(svc: Services, part_id: str, status: PartStatus) -> float | None:
    """When the part last entered ``status`` (the intent before a provider side effect)."""
    with svc.sessions() as session:
        return parts.entered_at(session, part_id, status)


def wait_for_list(svc: Services, part_id: str, status: PartStatus) -> None:
    """Raise a transient error while the intent is younger than the provider's list lag:
    a look-up that found nothing cannot yet conclude that the side effect never happened."""
    started = intent_at(svc, part_id, status)
    lag = svc.settings.pipeline.provider_list_lag_seconds
    left = (started or 0.0) + lag - time.time()
    if started is not None and left > 0:
        raise ProviderTransientError("the provider's list may not show the lost create yet; "
                                     "looking again", retry_after=left)


def find_lost_create(svc: Services, client: AnthropicClient,
                     part: PartRow) -> ProviderBatch | None:
    """The provider batch that a lost create made for ``part`` (see the module docstring)."""
    started = intent_at(svc, part.id, PartStatus.SUBMITTING)
    if started is None:
        return None
    since = started - svc.settings.pipeline.provider_clock_skew_seconds
    matches: list[ProviderBatch] = []
    for pbatch in client.list_batches(page_size=100):
        if pbatch.created_at is not None and pbatch.created_at < since:
            break  # newest first: everything further is older than the window
        if pbatch.request_counts.total == part.request_count:
            matches.append(pbatch)
    owned = _owned_by_other_parts(svc, part.id, [m.id for m in matches])
    candidates = [m for m in matches if m.id not in owned]
    if not candidates:
        return None
    ours = _custom_ids(svc, part.id)
    verified, undecided = [], []
    for candidate in candidates:
        if candidate.results_url is None:  # still running: its requests cannot be seen yet
            undecided.append(candidate.id)
        elif _results_belong(client, candidate.id, ours):
            verified.append(candidate)
    if len(verified) > 1:
        raise AmbiguousCreate([v.id for v in verified])
    if verified:
        return verified[0]
    if undecided:
        raise ProviderTransientError(
            f"possible lost creates {', '.join(undecided)} are still running; their requests "
            "show once they end", retry_after=svc.settings.pipeline.poll_min_seconds)
    return None


def _custom_ids(svc: Services, part_id: str) -> set[str]:
    with svc.sessions() as session:
        return parts.custom_ids(session, part_id)


def _results_belong(client: AnthropicClient, batch_id: str, ours: set[str]) -> bool:
    """Whether a sample of an ended batch's results are all this part's requests."""
    with tempfile.TemporaryFile() as raw:
        client.download_results(batch_id, raw)
        raw.seek(0)
        sample = [orjson.loads(line)["custom_id"] for _, line in zip(range(_SAMPLE),
                                                                     _lines(raw), strict=False)]
    return bool(sample) and all(custom_id in ours for custom_id in sample)


def _owned_by_other_parts(svc: Services, part_id: str, batch_ids: list[str]) -> set[str]:
    with svc.sessions() as session:
        return parts.provider_batches_of_others(session, part_id, batch_ids)


def park_ambiguous(svc: Services, part: PartRow, exc: AmbiguousCreate) -> None:
    """Leave the part in ``submitting`` for an operator, with the candidates recorded."""
    message = (f"lost create is ambiguous: provider batches {exc} all match this part "
               f"({part.request_count} requests, created in its intent window); not guessing. "
               "Cancel the extra one at the provider; the part looks again in "
               f"{PARK_SECONDS / 3600:.0f} h")
    with svc.sessions.begin() as session:
        if not parts.park_part(session, part.id, PartStatus.SUBMITTING,
                               time.time() + PARK_SECONDS, message):
            return
    logger.error("part.ambiguous_create", extra={"part_id": part.id,
                                                 "candidates": exc.candidates})


# -- create ----------------------------------------------------------------------------------

def create_batch(svc: Services, part: PartRow, dep: Deployment, *, fresh: bool) -> ProviderBatch:
    """Find the part's lost create, or send the create (requests streamed from a temp file).

    Raises :class:`AmbiguousCreate` when the look-up cannot decide."""
    client = svc.providers.anthropic_for(dep.id, once=True)
    if not fresh:
        found = find_lost_create(svc, client, part)
        if found is not None:
            logger.info("part.create_found", extra={"part_id": part.id, "provider_batch":
                                                    found.id})
            return found
        wait_for_list(svc, part.id, PartStatus.SUBMITTING)
    with tempfile.TemporaryFile() as tmp:
        write_requests(svc, part, dep, tmp)
        tmp.seek(0)
        return client.create_batch(tmp)


def write_requests(svc: Services, part: PartRow, dep: Deployment, out: IO[bytes]) -> None:
    """The part's requests as Message Batch requests, one JSON object per line."""
    default = svc.settings.pipeline.anthropic_default_max_tokens
    model = dep.model or None
    with svc.sessions() as session:
        for body in parts.iter_request_bodies(session, part.id):
            request = to_request(orjson.loads(body), model=model, default_max_tokens=default)
            out.write(orjson.dumps(request) + b"\n")


# -- results ---------------------------------------------------------------------------------

def download_results(client: AnthropicClient, batch_id: str, endpoint: str,
                     dest: IO[bytes]) -> None:
    """The batch's results as OpenAI output lines in ``dest`` (streamed through disk)."""
    native = is_native(endpoint)
    created = int(time.time())
    with tempfile.TemporaryFile() as raw:
        client.download_results(batch_id, raw)
        raw.seek(0)
        for line in _lines(raw):
            dest.write(orjson.dumps(to_output_line(orjson.loads(line), native=native,
                                                   created=created)) + b"\n")


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    for raw in stream:
        if raw.strip():
            yield raw
