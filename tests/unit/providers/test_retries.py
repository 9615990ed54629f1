"""Retry and error mapping rules, through httpx.MockTransport handlers."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import httpx
import pytest

from batchyard.config import HttpSettings
from batchyard.errors import (
    ProviderAuthError,
    ProviderNotFoundError,
    ProviderRejectedError,
    ProviderTransientError,
)
from batchyard.providers import ProviderConfig
from batchyard.providers.failures import RetryClock, retry_after

from .conftest import FAST, Handler, Sleeps, async_provider, batch_body, sync_provider


def scripted(*responses: httpx.Response | Exception) -> tuple[list[httpx.Request], Handler]:
    """A handler answering with ``responses`` in order (exceptions are raised)."""
    seen: list[httpx.Request] = []
    queue: Iterator[httpx.Response | Exception] = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = next(queue)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, handler


def rate_limited(**headers: str) -> httpx.Response:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                      "code": "rate_limit_exceeded"}}
    return httpx.Response(429, json=body, headers={"x-request-id": "req_429", **headers})


def test_429_with_retry_after_waits_that_long_then_succeeds(sleeps: Sleeps) -> None:
    seen, handler = scripted(rate_limited(**{"retry-after": "1.5"}),
                             httpx.Response(200, json=batch_body()))
    batch = sync_provider(handler, sleeps).retrieve_batch("batch_1")
    assert batch.id == "batch_1" and batch.status == "in_progress"
    assert len(seen) == 2 and sleeps.delays == [1.5]


def test_retry_after_ms_wins_over_retry_after(sleeps: Sleeps) -> None:
    _, handler = scripted(rate_limited(**{"retry-after-ms": "250", "retry-after": "3"}),
                          httpx.Response(200, json=batch_body()))
    sync_provider(handler, sleeps).retrieve_batch("batch_1")
    assert sleeps.delays == [0.25]


def test_retry_after_as_http_date() -> None:
    now = 1_700_000_000.0
    when = email.utils.formatdate(now + 4, usegmt=True)
    assert retry_after(httpx.Headers({"retry-after": when}), now=now) == pytest.approx(4.0)


def test_retry_after_above_the_maximum_is_not_waited_for(sleeps: Sleeps) -> None:
    seen, handler = scripted(rate_limited(**{"retry-after": "600"}))
    with pytest.raises(ProviderTransientError) as caught:
        sync_provider(handler, sleeps).retrieve_batch("batch_1")
    assert len(seen) == 1 and sleeps.delays == []
    assert caught.value.retry_after == 600.0 and caught.value.status == 429
    assert caught.value.code == "rate_limit_exceeded"


def test_5xx_exhausting_attempts_raises_transient_with_code_and_request_id(
        sleeps: Sleeps) -> None:
    body = {"error": {"message": "The server had an error", "type": "server_error",
                      "param": None, "code": "server_error"}}
    answers = [httpx.Response(500, json=body, headers={"x-request-id": f"req_{n}"})
               for n in range(FAST.max_attempts)]
    seen, handler = scripted(*answers)
    with pytest.raises(ProviderTransientError) as caught:
        sync_provider(handler, sleeps).retrieve_batch("batch_1")
    error = caught.value
    assert len(seen) == FAST.max_attempts and len(sleeps.delays) == FAST.max_attempts - 1
    assert (error.status, error.code, error.request_id) == (500, "server_error", "req_3")
    assert error.message == "The server had an error"
    assert isinstance(error.__cause__, httpx.HTTPStatusError)


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    clock = RetryClock(HttpSettings(backoff_initial=0.5, backoff_max=8.0), rand=lambda: 1.0)
    assert [clock.backoff(n) for n in (1, 2, 3, 5, 9)] == [0.375, 0.75, 1.5, 6.0, 6.0]
    no_jitter = RetryClock(HttpSettings(backoff_initial=0.5, backoff_max=8.0), rand=lambda: 0.0)
    assert [no_jitter.backoff(n) for n in (1, 4, 6)] == [0.5, 4.0, 8.0]


def test_total_retry_time_bounds_the_retries() -> None:
    now = [0.0]
    clock = RetryClock(HttpSettings(max_attempts=100, retry_total_seconds=10.0,
                                    backoff_initial=4.0, backoff_max=4.0),
                       clock=lambda: now[0], rand=lambda: 0.0)
    error = ProviderTransientError("x", status=503)
    assert clock.delay_after(error, True) == 4.0
    now[0] = 4.0
    assert clock.delay_after(error, True) == 4.0
    now[0] = 8.0
    assert clock.delay_after(error, True) is None


def test_400_is_rejected_at_once_with_the_providers_fields(sleeps: Sleeps) -> None:
    body = {"error": {"message": "Invalid file format for Batch API. Must be .jsonl",
                      "type": "invalid_request_error", "param": "file", "code": None}}
    seen, handler = scripted(httpx.Response(400, json=body, headers={"x-request-id": "req_b"}))
    with pytest.raises(ProviderRejectedError) as caught:
        sync_provider(handler, sleeps).create_batch(
            input_file_id="file-x", endpoint="/v1/chat/completions")
    assert len(seen) == 1 and sleeps.delays == []
    assert not isinstance(caught.value, ProviderTransientError)
    assert caught.value.message.startswith("Invalid file format")
    assert (caught.value.param, caught.value.request_id) == ("file", "req_b")


@pytest.mark.parametrize(("status", "kind"), [
    (401, ProviderAuthError), (403, ProviderAuthError), (404, ProviderNotFoundError),
    (422, ProviderRejectedError), (408, ProviderTransientError), (409, ProviderTransientError),
    (502, ProviderTransientError)])
def test_status_maps_to_the_error_tree(status: int, kind: type, sleeps: Sleeps) -> None:
    answers = [httpx.Response(status, json={"error": {"message": "m", "code": "c"}})] * 5
    _, handler = scripted(*answers)
    with pytest.raises(kind) as caught:
        sync_provider(handler, sleeps).retrieve_file("file-x")
    assert caught.value.status == status and caught.value.code == "c"


def test_azure_error_envelope_and_apim_request_id(sleeps: Sleeps) -> None:
    config = ProviderConfig(kind="azure", api_key="k", api_base="http://azure.test",
                            api_version="2024-10-21")
    body = {"error": {"code": "notFound", "message": "File with id file-x not found."}}
    _, handler = scripted(httpx.Response(404, json=body, headers={"apim-request-id": "uuid-1"}))
    with pytest.raises(ProviderNotFoundError) as caught:
        sync_provider(handler, sleeps, config).retrieve_file("file-x")
    assert (caught.value.code, caught.value.request_id) == ("notFound", "uuid-1")
    assert caught.value.message == "File with id file-x not found."


def test_x_should_retry_overrides_the_status(sleeps: Sleeps) -> None:
    seen, handler = scripted(httpx.Response(500, headers={"x-should-retry": "false"}))
    with pytest.raises(ProviderTransientError):
        sync_provider(handler, sleeps).retrieve_batch("b")
    assert len(seen) == 1
    seen, handler = scripted(httpx.Response(400, headers={"x-should-retry": "true"}),
                             httpx.Response(200, json=batch_body("b")))
    assert sync_provider(handler, sleeps).retrieve_batch("b").id == "b"
    assert len(seen) == 2


def test_dropped_connection_is_retried(sleeps: Sleeps) -> None:
    seen, handler = scripted(httpx.RemoteProtocolError("Server disconnected"),
                             httpx.ReadTimeout("timed out"),
                             httpx.Response(200, json=batch_body()))
    assert sync_provider(handler, sleeps).retrieve_batch("batch_1").id == "batch_1"
    assert len(seen) == 3 and len(sleeps.delays) == 2


def test_connection_failures_exhausting_attempts_chain_the_httpx_error(sleeps: Sleeps) -> None:
    _, handler = scripted(*[httpx.ConnectError("refused")] * FAST.max_attempts)
    with pytest.raises(ProviderTransientError) as caught:
        sync_provider(handler, sleeps).retrieve_batch("b")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.status is None and "connection failed" in caught.value.message


def test_non_json_success_is_a_provider_fault_not_a_crash(sleeps: Sleeps) -> None:
    _, handler = scripted(httpx.Response(200, text="<html>gateway</html>"))
    with pytest.raises(ProviderTransientError) as caught:
        sync_provider(handler, sleeps).retrieve_batch("b")
    assert caught.value.status == 200


@pytest.mark.anyio
async def test_async_adapter_applies_the_same_rules(sleeps: Sleeps) -> None:
    seen, handler = scripted(rate_limited(**{"retry-after": "0.5"}),
                             httpx.ConnectError("refused"),
                             httpx.Response(200, json=batch_body()),
                             httpx.Response(400, json={"error": {"message": "no",
                                                                 "code": "bad"}}))
    provider = async_provider(handler, sleeps)
    async with provider:
        assert (await provider.retrieve_batch("batch_1")).id == "batch_1"
        with pytest.raises(ProviderRejectedError) as caught:
            await provider.cancel_batch("batch_1")
    assert len(seen) == 4 and sleeps.delays[0] == 0.5 and len(sleeps.delays) == 2
    assert caught.value.code == "bad"


def test_date_header_in_the_past_means_no_wait() -> None:
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after(httpx.Headers({"retry-after": past})) == 0.0
