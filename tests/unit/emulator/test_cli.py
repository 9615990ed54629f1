"""``batchyard emulator`` starts a working server with the flags it was given."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture()
def azure_cli_server() -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "batchyard", "emulator", "--port", str(port),
               "--flavor", "azure", "--api-key", "sk-cli", "--rate-limit-next", "1",
               "--retry-after", "2", "--fault-method", "GET"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                httpx.get(base + "/_emulator/stats", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_flags_configure_flavor_keys_and_faults(azure_cli_server: str) -> None:
    url = azure_cli_server + "/openai/files"
    params = {"api-version": "2024-10-21"}
    assert httpx.get(url, params=params, headers={"api-key": "wrong"}).status_code == 401
    limited = httpx.get(url, params=params, headers={"api-key": "sk-cli"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    listed = httpx.get(url, params=params, headers={"api-key": "sk-cli"})
    assert listed.status_code == 200 and listed.json() == {"object": "list", "data": []}
    assert listed.headers["apim-request-id"]
