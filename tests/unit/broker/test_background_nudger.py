"""BackgroundNudger: a burst of nudges leaves in one call of the sender's send_many, in
order; a sender without send_many gets them one by one; close sends what is queued."""

from __future__ import annotations

from collections.abc import Sequence

from batchyard.broker.nudge import BackgroundNudger


class Recorder:
    """A sender that can send many at once (like RedisNudger) and records each call."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []

    def send_many(self, nudges: Sequence[tuple[str, str]]) -> None:
        self.calls.append(list(nudges))

    def __call__(self, task: str, object_id: str) -> None:
        self.send_many([(task, object_id)])


def test_a_burst_of_nudges_goes_out_in_one_call_in_order() -> None:
    sender = Recorder()
    # A long linger: the burst below is queued long before the thread sends anything.
    nudge = BackgroundNudger(sender, linger_seconds=1.0)
    for n in range(10):
        nudge("prepare", f"batch_{n}")
    nudge.close()
    assert sender.calls == [[("prepare", f"batch_{n}") for n in range(10)]]


def test_a_sender_without_send_many_gets_each_nudge_alone() -> None:
    sent: list[tuple[str, str]] = []
    nudge = BackgroundNudger(lambda task, object_id: sent.append((task, object_id)),
                             linger_seconds=1.0)
    for n in range(3):
        nudge("ingest", f"part_{n}")
    nudge.close()
    assert sent == [("ingest", f"part_{n}") for n in range(3)]
