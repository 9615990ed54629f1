"""Which requests the retrieve fast path takes (everything else goes to the full app)."""

from __future__ import annotations

from typing import Any

import pytest

from batchyard.api.app import ROUTE_PREFIXES
from batchyard.api.fastpath import retrieve_batch_id

PREFIXES = frozenset(prefix for prefix, _ in ROUTE_PREFIXES)


def scope(path: str, method: str = "GET", **extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, **extra}


@pytest.mark.parametrize("prefix", sorted(PREFIXES))
def test_a_retrieve_under_every_route_prefix_is_taken(prefix: str) -> None:
    assert retrieve_batch_id(scope(f"{prefix}/batches/batch_abc"), PREFIXES) == "batch_abc"


@pytest.mark.parametrize("request_scope", [
    scope("/v1/batches/batch_abc", method="POST"),
    scope("/v1/batches/batch_abc/cancel"),
    scope("/v1/batches/"),
    scope("/v1/batches"),
    scope("/v2/batches/batch_abc"),
    scope("/v1/files/file_abc"),
    scope("/v1/batches/batch_abc", root_path="/proxy"),
    {"type": "websocket", "path": "/v1/batches/batch_abc"},
])
def test_other_requests_go_to_the_full_app(request_scope: dict[str, Any]) -> None:
    assert retrieve_batch_id(request_scope, PREFIXES) is None
