"""The batch move table: status, stage and due time come from one place."""

from __future__ import annotations

import pytest

from batchyard.domain.lifecycle import (
    BATCH_MOVES,
    BATCH_TRANSITIONS,
    NEW_BATCH,
    PARKED_SECONDS,
    STAGE_TASK,
    TERMINAL_BATCH_STATUSES,
    BatchStage,
    BatchStatus,
    Due,
    batch_move,
    due_at,
)

MOVES = [(a, b) for a, moves in BATCH_MOVES.items() for b in moves]


def test_the_transition_table_is_the_move_table() -> None:
    assert {(a, b) for a, bs in BATCH_TRANSITIONS.items() for b in bs} == set(MOVES)


@pytest.mark.parametrize(("current", "new"), MOVES)
def test_a_move_into_a_terminal_status_parks_the_batch_for_good(current: BatchStatus,
                                                                new: BatchStatus) -> None:
    move = batch_move(current, new)
    if new in TERMINAL_BATCH_STATUSES:
        assert (move.stage, move.due) == (BatchStage.FINALIZED, Due.PARKED)
    else:
        assert move.stage != BatchStage.FINALIZED


@pytest.mark.parametrize("current", [BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS,
                                     BatchStatus.FINALIZING])
def test_a_cancel_keeps_the_stage_and_is_due_at_once(current: BatchStatus) -> None:
    move = batch_move(current, BatchStatus.CANCELLING)
    assert move.stage is None and due_at(move, 100.0) == 100.0


def test_a_new_batch_waits_for_prepare_and_a_split_one_is_parked() -> None:
    assert STAGE_TASK[NEW_BATCH.stage or BatchStage.FINALIZED] == "prepare"
    move = batch_move("validating", "in_progress")
    assert move.stage == BatchStage.RUNNING and STAGE_TASK[move.stage] is None
    assert due_at(move, 100.0) == 100.0 + PARKED_SECONDS


def test_an_illegal_move_has_no_entry() -> None:
    with pytest.raises(KeyError):
        batch_move(BatchStatus.IN_PROGRESS, BatchStatus.COMPLETED)
