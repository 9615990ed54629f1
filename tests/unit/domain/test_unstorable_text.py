"""Text no database column can store is refused at validation, with its line."""

from __future__ import annotations

import orjson
import pytest

from batchyard.domain.inputs import iter_request_blocks, iter_request_lines
from batchyard.domain.polling import first_poll_delay, next_poll_delay
from batchyard.errors import JsonlError


def _line(custom_id: str, model: str = "gpt-4o-mini") -> bytes:
    return orjson.dumps({"custom_id": custom_id, "method": "POST",
                         "url": "/v1/chat/completions",
                         "body": {"model": model, "messages": []}}) + b"\n"


@pytest.mark.parametrize(("lines", "bad_line"), [
    ([_line("a\u0000")], 1),
    ([_line("ok"), _line("x", model="gpt\u00004o")], 2),
])
def test_a_nul_in_a_custom_id_or_model_names_its_line(lines: list[bytes],
                                                      bad_line: int) -> None:
    with pytest.raises(JsonlError) as caught:
        list(iter_request_lines(lines))
    assert (caught.value.line, caught.value.code) == (bad_line, "invalid_text")


def test_the_bulk_path_finds_a_nul_deep_in_a_long_file() -> None:
    lines = [_line(f"r{i}") for i in range(5_000)]
    lines[4_321] = _line("r\u00004321")
    with pytest.raises(JsonlError) as caught:
        for _ in iter_request_blocks([b"".join(lines)]):
            pass
    assert (caught.value.line, caught.value.code) == (4_322, "invalid_text")


def test_the_first_poll_is_soon_and_later_ones_back_off_to_the_normal_interval() -> None:
    first = first_poll_delay(first_s=5.0, min_s=30.0)
    assert first == 5.0
    assert next_poll_delay(first, changed=False, min_s=30.0, max_s=600.0, factor=1.5) == 30.0
    assert next_poll_delay(first, changed=True, min_s=30.0, max_s=600.0, factor=1.5) == 30.0
    assert first_poll_delay(first_s=5.0, min_s=1.0) == 1.0  # never later than normal
