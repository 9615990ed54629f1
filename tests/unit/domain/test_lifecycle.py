"""Lifecycle: every status pair, the provider mapping, and the derivation table."""

from __future__ import annotations

import itertools

import pytest

from batchyard.domain.lifecycle import (
    BATCH_TRANSITIONS,
    PART_TRANSITIONS,
    TERMINAL_BATCH_STATUSES,
    TERMINAL_PART_STATUSES,
    BatchStatus,
    PartStatus,
    PartView,
    can_transition_batch,
    can_transition_part,
    derive_batch_status,
    is_provider_terminal,
    part_status_after_poll,
)

B = BatchStatus
P = PartStatus

# The intended graphs, written out edge by edge (independently of the module's tables).
BATCH_EDGES = {
    ("validating", "in_progress"), ("validating", "finalizing"), ("validating", "failed"),
    ("validating", "cancelling"),
    ("in_progress", "finalizing"), ("in_progress", "failed"), ("in_progress", "cancelling"),
    ("finalizing", "completed"), ("finalizing", "expired"), ("finalizing", "cancelling"),
    ("cancelling", "cancelled"),
}
PART_EDGES = {
    ("pending", "uploading"), ("pending", "waiting_quota"), ("pending", "failed"),
    ("pending", "cancelled"),
    ("waiting_quota", "pending"), ("waiting_quota", "uploaded"),
    ("waiting_quota", "submitting"), ("waiting_quota", "failed"),
    ("waiting_quota", "cancelled"),
    ("uploading", "uploaded"), ("uploading", "pending"), ("uploading", "failed"),
    ("uploading", "cancelled"),
    ("uploaded", "submitting"), ("uploaded", "waiting_quota"), ("uploaded", "failed"),
    ("uploaded", "cancelled"),
    ("submitting", "submitted"), ("submitting", "uploaded"), ("submitting", "waiting_quota"),
    ("submitting", "failed"), ("submitting", "cancelled"),
    ("submitted", "ingesting"), ("submitted", "waiting_quota"), ("submitted", "failed"),
    ("ingesting", "ingested"), ("ingesting", "failed"),
}


def test_batch_statuses_are_exactly_openais() -> None:
    assert [s.value for s in B] == ["validating", "failed", "in_progress", "finalizing",
                                    "completed", "expired", "cancelling", "cancelled"]
    assert {s.value for s in TERMINAL_BATCH_STATUSES} == {"failed", "completed", "expired",
                                                           "cancelled"}
    assert set(BATCH_TRANSITIONS) == set(B)


def test_part_statuses_and_terminals() -> None:
    assert {s.value for s in P} == {"pending", "waiting_quota", "uploading", "uploaded",
                                    "submitting", "submitted", "ingesting", "ingested",
                                    "failed", "cancelled"}
    assert {s.value for s in TERMINAL_PART_STATUSES} == {"ingested", "failed", "cancelled"}
    assert set(PART_TRANSITIONS) == set(P)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(B, B)))
def test_every_batch_status_pair(a: BatchStatus, b: BatchStatus) -> None:
    assert can_transition_batch(a, b) is ((a.value, b.value) in BATCH_EDGES)
    assert can_transition_batch(a.value, b.value) is can_transition_batch(a, b)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(P, P)))
def test_every_part_status_pair(a: PartStatus, b: PartStatus) -> None:
    assert can_transition_part(a, b) is ((a.value, b.value) in PART_EDGES)


def test_terminal_statuses_have_no_way_out() -> None:
    assert all(not BATCH_TRANSITIONS[s] for s in TERMINAL_BATCH_STATUSES)
    assert all(not PART_TRANSITIONS[s] for s in TERMINAL_PART_STATUSES)


def test_unknown_status_is_an_error() -> None:
    with pytest.raises(ValueError):
        can_transition_batch("validating", "done")


@pytest.mark.parametrize(("provider", "codes", "expected"), [
    ("validating", (), P.SUBMITTED), ("in_progress", (), P.SUBMITTED),
    ("finalizing", (), P.SUBMITTED), ("cancelling", (), P.SUBMITTED),
    ("completed", (), P.INGESTING), ("expired", (), P.INGESTING),
    ("cancelled", (), P.INGESTING), ("Completed", (), P.INGESTING),
    ("failed", ("invalid_json_line",), P.FAILED), ("failed", (), P.FAILED),
    ("failed", ("token_limit_exceeded",), P.WAITING_QUOTA),
    ("some_new_status", (), P.SUBMITTED),
])
def test_part_status_after_poll(provider: str, codes: tuple[str, ...],
                                expected: PartStatus) -> None:
    assert part_status_after_poll(provider, error_codes=codes) is expected
    assert can_transition_part(P.SUBMITTED, expected) or expected is P.SUBMITTED


def test_provider_terminal() -> None:
    assert [is_provider_terminal(s) for s in ("completed", "failed", "expired", "cancelled",
                                              "in_progress", "cancelling", "Failed")] == [
        True, True, True, True, False, False, True]


def parts(*statuses: str) -> list[PartView]:
    return [PartView(P(s)) for s in statuses]


BASE = {"cancel_requested": False, "prepared": True, "validation_failed": False,
        "pending_retries": 0, "finalized": False}

# (current, part statuses, overrides of BASE, expected)
DERIVATION = [
    # not prepared yet
    ("validating", (), {"prepared": False}, "validating"),
    ("validating", ("pending",), {"prepared": False}, "validating"),
    # input rejected
    ("validating", (), {"prepared": False, "validation_failed": True}, "failed"),
    # prepared but nothing at the provider yet
    ("validating", ("pending", "uploading", "uploaded"), {}, "validating"),
    ("validating", ("waiting_quota", "submitting"), {}, "validating"),
    # a first part submitted
    ("validating", ("submitted", "pending"), {}, "in_progress"),
    ("validating", ("ingesting",), {}, "in_progress"),
    # running: stays in_progress even if a retry part is only pending
    ("in_progress", ("ingested", "pending"), {}, "in_progress"),
    ("in_progress", ("ingested", "ingested"), {"pending_retries": 3}, "in_progress"),
    ("in_progress", ("ingested", "waiting_quota"), {}, "in_progress"),
    # all done: finalizing, then completed / expired
    ("in_progress", ("ingested", "ingested"), {}, "finalizing"),
    ("in_progress", ("ingested", "failed"), {}, "finalizing"),
    ("finalizing", ("ingested", "failed"), {}, "finalizing"),
    ("finalizing", ("ingested",), {"finalized": True}, "completed"),
    ("finalizing", ("ingested",), {"finalized": True, "expired_requests": 2}, "expired"),
    # seen only at the end: still passes through finalizing
    ("validating", ("ingested",), {}, "finalizing"),
    ("in_progress", ("ingested",), {"finalized": True}, "finalizing"),
    ("validating", ("ingested",), {"finalized": True}, "finalizing"),
    # every part rejected by the provider
    ("in_progress", ("failed", "failed"), {}, "failed"),
    ("validating", ("failed",), {}, "failed"),
    ("in_progress", ("failed", "failed"), {"pending_retries": 1}, "in_progress"),
    # cancel
    ("in_progress", ("submitted", "ingested"), {"cancel_requested": True}, "cancelling"),
    ("validating", ("pending",), {"cancel_requested": True}, "cancelling"),
    ("cancelling", ("ingesting", "cancelled"), {"cancel_requested": True}, "cancelling"),
    ("cancelling", ("ingested", "cancelled"), {"cancel_requested": True}, "cancelling"),
    ("cancelling", ("ingested", "cancelled"), {"cancel_requested": True, "finalized": True},
     "cancelled"),
    ("cancelling", ("ingested",), {"finalized": True}, "cancelled"),
    ("finalizing", ("ingested",), {"cancel_requested": True}, "cancelling"),
    # cancelled before it was prepared: nothing to wait for once finalized
    ("cancelling", (), {"cancel_requested": True, "prepared": False, "finalized": True},
     "cancelled"),
    # terminal stays terminal, whatever the inputs say
    ("completed", ("submitted",), {"cancel_requested": True}, "completed"),
    ("failed", ("ingested",), {"finalized": True}, "failed"),
    ("expired", ("pending",), {"pending_retries": 5}, "expired"),
    ("cancelled", ("submitted",), {}, "cancelled"),
    # never backwards: a late retry part does not reopen finalizing
    ("finalizing", ("ingested", "pending"), {}, "finalizing"),
    ("in_progress", ("pending",), {"prepared": False}, "in_progress"),
]


@pytest.mark.parametrize(("current", "statuses", "overrides", "expected"), DERIVATION)
def test_derivation_table(current: str, statuses: tuple[str, ...],
                          overrides: dict[str, object], expected: str) -> None:
    kwargs = {**BASE, **overrides}
    result = derive_batch_status(B(current), parts(*statuses), **kwargs)  # type: ignore[arg-type]
    assert result is B(expected)
    assert result == B(current) or can_transition_batch(B(current), result)


@pytest.mark.parametrize("current", list(B))
@pytest.mark.parametrize("cancel", [False, True])
@pytest.mark.parametrize("finalized", [False, True])
@pytest.mark.parametrize("statuses", [(), ("pending",), ("submitted", "ingested"),
                                      ("ingested",), ("failed",), ("cancelled", "ingested")])
def test_derivation_only_ever_makes_legal_moves(current: BatchStatus, cancel: bool,
                                                finalized: bool,
                                                statuses: tuple[str, ...]) -> None:
    result = derive_batch_status(current, parts(*statuses), cancel_requested=cancel,
                                 prepared=bool(statuses), validation_failed=False,
                                 pending_retries=0, finalized=finalized)
    assert result == current or can_transition_batch(current, result)
