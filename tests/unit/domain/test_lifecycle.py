"""Lifecycle: every status pair, the provider mappings, the final status and the derivation."""

from __future__ import annotations

import itertools

import pytest

from batchyard.domain.lifecycle import (
    BATCH_TRANSITIONS,
    LIVE_PART_STATUSES,
    OPEN_BATCH_STATUSES,
    PART_TRANSITIONS,
    POLL_PART_STATUSES,
    SUBMIT_PART_STATUSES,
    TERMINAL_BATCH_STATUSES,
    TERMINAL_PART_STATUSES,
    BatchStatus,
    PartStatus,
    can_transition_batch,
    can_transition_part,
    derive_batch_status,
    final_batch_status,
    is_provider_terminal,
    part_status_after_ingest,
    part_status_after_poll,
)

B = BatchStatus
P = PartStatus

# The intended graphs, written out edge by edge (independently of the module's tables):
# exactly the writes the pipeline's services make.
BATCH_EDGES = {
    ("validating", "in_progress"), ("validating", "failed"), ("validating", "cancelling"),
    ("in_progress", "finalizing"), ("in_progress", "cancelling"),
    ("finalizing", "completed"), ("finalizing", "expired"), ("finalizing", "failed"),
    ("finalizing", "cancelling"),
    ("cancelling", "cancelled"),
}
PART_EDGES = {
    ("pending", "uploading"), ("pending", "failed"), ("pending", "cancelled"),
    ("uploading", "uploaded"), ("uploading", "failed"),
    ("uploaded", "submitting"), ("uploaded", "failed"),
    ("submitting", "submitted"), ("submitting", "failed"),
    ("submitted", "cancelling"), ("submitted", "ingesting"),
    ("cancelling", "ingesting"),
    ("ingesting", "ingested"), ("ingesting", "failed"), ("ingesting", "requeued"),
}


def test_batch_statuses_are_exactly_openais() -> None:
    assert [s.value for s in B] == ["validating", "failed", "in_progress", "finalizing",
                                    "completed", "expired", "cancelling", "cancelled"]
    assert {s.value for s in TERMINAL_BATCH_STATUSES} == {"failed", "completed", "expired",
                                                           "cancelled"}
    assert set(OPEN_BATCH_STATUSES) == set(B) - TERMINAL_BATCH_STATUSES
    assert set(BATCH_TRANSITIONS) == set(B)


def test_part_statuses_and_groups() -> None:
    assert {s.value for s in P} == {"pending", "uploading", "uploaded", "submitting",
                                    "submitted", "cancelling", "ingesting", "ingested",
                                    "failed", "cancelled", "requeued"}
    assert {s.value for s in TERMINAL_PART_STATUSES} == {"ingested", "failed", "cancelled",
                                                          "requeued"}
    assert [s.value for s in SUBMIT_PART_STATUSES] == ["pending", "uploading", "uploaded",
                                                       "submitting"]
    assert [s.value for s in POLL_PART_STATUSES] == ["submitted", "cancelling"]
    # Live and terminal split the statuses exactly.
    assert set(LIVE_PART_STATUSES) | set(TERMINAL_PART_STATUSES) == set(P)
    assert not set(LIVE_PART_STATUSES) & set(TERMINAL_PART_STATUSES)
    assert set(PART_TRANSITIONS) == set(P)


def test_every_part_status_is_reachable_from_pending() -> None:
    seen, todo = {P.PENDING}, [P.PENDING]
    while todo:
        for nxt in PART_TRANSITIONS[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert seen == set(P)  # no dead member


@pytest.mark.parametrize(("a", "b"), list(itertools.product(B, B)))
def test_every_batch_status_pair(a: BatchStatus, b: BatchStatus) -> None:
    assert can_transition_batch(a, b) is ((a.value, b.value) in BATCH_EDGES)
    assert can_transition_batch(a.value, b.value) is can_transition_batch(a, b)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(P, P)))
def test_every_part_status_pair(a: PartStatus, b: PartStatus) -> None:
    assert can_transition_part(a, b) is ((a.value, b.value) in PART_EDGES)
    assert can_transition_part(a.value, b.value) is can_transition_part(a, b)


def test_terminal_statuses_have_no_way_out_and_live_ones_do() -> None:
    assert all(not BATCH_TRANSITIONS[s] for s in TERMINAL_BATCH_STATUSES)
    assert all(not PART_TRANSITIONS[s] for s in TERMINAL_PART_STATUSES)
    assert all(PART_TRANSITIONS[s] for s in LIVE_PART_STATUSES)


def test_unknown_status_is_an_error() -> None:
    with pytest.raises(ValueError):
        can_transition_batch("validating", "done")
    with pytest.raises(ValueError):
        can_transition_part("waiting_quota", "pending")


@pytest.mark.parametrize("current", list(POLL_PART_STATUSES))
@pytest.mark.parametrize(("provider", "ends"), [
    ("validating", False), ("in_progress", False), ("finalizing", False),
    ("cancelling", False), ("some_new_status", False),
    ("completed", True), ("expired", True), ("cancelled", True), ("failed", True),
    ("Completed", True),
])
def test_part_status_after_poll(current: PartStatus, provider: str, ends: bool) -> None:
    result = part_status_after_poll(current, provider)
    assert result is (P.INGESTING if ends else current)
    assert result is current or can_transition_part(current, result)


def test_only_polled_parts_have_a_poll_outcome() -> None:
    with pytest.raises(ValueError):
        part_status_after_poll(P.PENDING, "completed")


@pytest.mark.parametrize(("provider", "codes", "has_output", "expected"), [
    ("completed", (), True, P.INGESTED), ("completed", (), False, P.INGESTED),
    ("expired", (), False, P.INGESTED), ("cancelled", (), True, P.INGESTED),
    ("failed", ("invalid_json_line",), False, P.FAILED), ("failed", (), False, P.FAILED),
    ("failed", (), True, P.INGESTED),
    ("failed", ("token_limit_exceeded",), False, P.REQUEUED),
    ("failed", ("other", "token_limit_exceeded"), True, P.REQUEUED),
    ("completed", ("token_limit_exceeded",), True, P.INGESTED),
    (None, (), False, P.INGESTED),
])
def test_part_status_after_ingest(provider: str | None, codes: tuple[str, ...],
                                  has_output: bool, expected: PartStatus) -> None:
    result = part_status_after_ingest(provider, error_codes=codes, has_output=has_output)
    assert result is expected
    assert can_transition_part(P.INGESTING, result)


def test_provider_terminal() -> None:
    assert [is_provider_terminal(s) for s in ("completed", "failed", "expired", "cancelled",
                                              "in_progress", "cancelling", "Failed")] == [
        True, True, True, True, False, False, True]


# (cancel_requested, any_part_failed, window_closed, expired_requests, expected)
FINAL = [
    (False, False, False, 0, "completed"),
    (False, False, False, 3, "completed"),  # batch_expired rows, but retried in the window
    (False, False, True, 0, "completed"),
    (False, False, True, 3, "expired"),
    (False, True, True, 3, "failed"),
    (False, True, False, 0, "failed"),
    (True, True, True, 3, "cancelled"),
    (True, False, False, 0, "cancelled"),
]


@pytest.mark.parametrize(("cancel", "failed", "closed", "expired", "expected"), FINAL)
def test_final_batch_status(cancel: bool, failed: bool, closed: bool, expired: int,
                            expected: str) -> None:
    result = final_batch_status(cancel_requested=cancel, any_part_failed=failed,
                                window_closed=closed, expired_requests=expired)
    assert result is B(expected)
    assert result in TERMINAL_BATCH_STATUSES


BASE = {"cancel_requested": False, "prepared": True, "validation_failed": False,
        "finalized": False}

# (current, part statuses, overrides of BASE, expected)
DERIVATION = [
    # not prepared yet
    ("validating", (), {"prepared": False}, "validating"),
    # input rejected
    ("validating", (), {"prepared": False, "validation_failed": True}, "failed"),
    # split: in progress at once, whatever the parts' progress
    ("validating", ("pending", "pending"), {}, "in_progress"),
    ("in_progress", ("pending", "uploading", "uploaded", "submitting"), {}, "in_progress"),
    ("in_progress", ("submitted", "cancelling", "ingesting"), {}, "in_progress"),
    # a retry or requeued part keeps it running
    ("in_progress", ("ingested", "pending"), {}, "in_progress"),
    ("in_progress", ("requeued", "pending"), {}, "in_progress"),
    # no live part: finalizing, then the final status
    ("in_progress", ("ingested", "requeued", "cancelled"), {}, "finalizing"),
    ("in_progress", ("ingested", "failed"), {}, "finalizing"),
    ("finalizing", ("ingested",), {"finalized": True}, "completed"),
    ("finalizing", ("ingested", "requeued", "ingested"), {"finalized": True}, "completed"),
    ("finalizing", ("ingested",), {"finalized": True, "window_closed": True,
                                   "expired_requests": 2}, "expired"),
    ("finalizing", ("ingested",), {"finalized": True, "expired_requests": 2}, "completed"),
    ("finalizing", ("ingested", "failed"), {"finalized": True}, "failed"),
    ("finalizing", ("failed", "failed"), {"finalized": True}, "failed"),
    # seen only at the end: still passes through finalizing
    ("in_progress", ("ingested",), {"finalized": True}, "finalizing"),
    ("in_progress", ("failed",), {"finalized": True}, "finalizing"),
    # cancel: cancelling until settled, then cancelled (partial results kept)
    ("validating", (), {"cancel_requested": True, "prepared": False}, "cancelling"),
    ("in_progress", ("submitted", "ingested"), {"cancel_requested": True}, "cancelling"),
    ("finalizing", ("ingested",), {"cancel_requested": True}, "cancelling"),
    ("cancelling", ("cancelling", "cancelled"), {"cancel_requested": True}, "cancelling"),
    ("cancelling", ("ingested", "cancelled"), {"cancel_requested": True, "finalized": True},
     "cancelled"),
    ("cancelling", (), {"cancel_requested": True, "prepared": False, "finalized": True},
     "cancelled"),
    # terminal stays terminal, whatever the inputs say
    ("completed", ("submitted",), {"cancel_requested": True}, "completed"),
    ("failed", ("ingested",), {"finalized": True}, "failed"),
    ("expired", ("pending",), {}, "expired"),
    ("cancelled", ("submitted",), {}, "cancelled"),
    # never backwards: a late retry part does not reopen finalizing
    ("finalizing", ("ingested", "pending"), {}, "finalizing"),
    ("in_progress", ("pending",), {"prepared": False}, "in_progress"),
]


@pytest.mark.parametrize(("current", "statuses", "overrides", "expected"), DERIVATION)
def test_derivation_table(current: str, statuses: tuple[str, ...],
                          overrides: dict[str, object], expected: str) -> None:
    kwargs = {**BASE, **overrides}
    result = derive_batch_status(current, statuses, **kwargs)  # type: ignore[arg-type]
    assert result is B(expected)
    assert result == B(current) or can_transition_batch(B(current), result)


@pytest.mark.parametrize("current", list(B))
@pytest.mark.parametrize("cancel", [False, True])
@pytest.mark.parametrize("finalized", [False, True])
@pytest.mark.parametrize("statuses", [(), ("pending",), ("submitted", "ingested"),
                                      ("ingested",), ("failed",), ("cancelled", "ingested"),
                                      ("requeued", "ingested")])
def test_derivation_only_ever_makes_legal_moves(current: BatchStatus, cancel: bool,
                                                finalized: bool,
                                                statuses: tuple[str, ...]) -> None:
    result = derive_batch_status(current, statuses, cancel_requested=cancel,
                                 prepared=bool(statuses), validation_failed=False,
                                 finalized=finalized, window_closed=True,
                                 expired_requests=1)
    assert result == current or can_transition_batch(current, result)


def test_the_pipeline_path_is_legal_step_by_step() -> None:
    # validating -> in_progress -> finalizing -> completed, each derived from the last.
    steps = [({"prepared": False}, ()), ({}, ("pending",)), ({}, ("submitted",)),
             ({}, ("ingested",)), ({"finalized": True}, ("ingested",))]
    seen = [B.VALIDATING]
    for overrides, statuses in steps:
        kwargs = {**BASE, **overrides}
        seen.append(derive_batch_status(seen[-1], statuses, **kwargs))  # type: ignore[arg-type]
    assert seen == [B.VALIDATING, B.VALIDATING, B.IN_PROGRESS, B.IN_PROGRESS, B.FINALIZING,
                    B.COMPLETED]
