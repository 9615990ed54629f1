"""Explaining a batch to front ends: its parts, its failed requests grouped by error code, and
its result lines in input order. Read-only; every statement lives in ``db/``."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.orm import Session

from batchyard.db.engine import readonly_engine
from batchyard.db.reports import failure_counts, failure_examples, ingested_counts, part_rows
from batchyard.db.results import iter_batch_results
from batchyard.domain.reports import (
    FailureGroup,
    PartSummary,
    ResultPreview,
    failure_group,
    part_summary,
)
from batchyard.services.batches import get_batch
from batchyard.services.container import Services
from batchyard.services.render import render_row


def list_parts(svc: Services, batch_id: str, *, owner: str | None) -> list[PartSummary]:
    """The parts of a batch visible to ``owner``, in submission order, each with its counts
    (the provider's live ones while it runs the part, the ingested results after)."""
    get_batch(svc, batch_id, owner=owner)  # NotFoundError for an unknown or foreign batch
    with svc.sessions() as session:
        rows = part_rows(session, batch_id)
        ingested = ingested_counts(session, batch_id)
    return [part_summary(r, ingested) for r in rows]


def failure_groups(svc: Services, batch_id: str, *, owner: str | None,
                   examples: int = 3) -> list[FailureGroup]:
    """The batch's failed requests grouped by error code, most frequent first, each with the
    first ``examples`` of them in input order."""
    get_batch(svc, batch_id, owner=owner)
    with svc.sessions() as session:
        return [failure_group(group.code, group.n,
                              failure_examples(session, batch_id, group.code, examples))
                for group in failure_counts(session, batch_id)]


def iter_result_lines(svc: Services, batch_id: str, *, owner: str | None,
                      failed_only: bool = False) -> Iterator[bytes]:
    """OpenAI-shaped result lines (successes and errors merged, input order); only the
    failed ones with ``failed_only``."""
    get_batch(svc, batch_id, owner=owner)
    with Session(readonly_engine(svc.engine)) as session:
        for row in iter_batch_results(session, batch_id, ok=False if failed_only else None):
            yield render_row(row)


def _answer(body: str | None, width: int) -> str:
    import orjson

    if not body:
        return ""
    try:
        choices = orjson.loads(body).get("choices") or [{}]
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return str(((choices[0].get("message") or {}).get("content")) or "")[:width]


def preview_results(svc: Services, batch_id: str, *, owner: str | None, limit: int,
                    answer_width: int = 50) -> list[ResultPreview]:
    """The first ``limit`` results in input order, each with the start of its answer."""
    get_batch(svc, batch_id, owner=owner)
    out: list[ResultPreview] = []
    with Session(readonly_engine(svc.engine)) as session:
        for row in iter_batch_results(session, batch_id, page_rows=limit):
            out.append(ResultPreview(line=row.line_no, custom_id=row.custom_id,
                                     status_code=row.status_code, attempt=row.attempt,
                                     answer=_answer(row.response_body, answer_width),
                                     error_code=row.error_code))
            if len(out) >= limit:
                break
    return out
