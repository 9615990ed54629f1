"""The CLI as a user who walks away meets it: `batchyard up` in one directory, the commands in
another (BATCHYARD_URL), real worker processes and the emulator. Exit codes and the reasons
printed with them, the start line and lifecycle logs of `up` without a secret, `health`, and
a command that finds no database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from batchyard.cli import app
from batchyard.emulator import EmulatorConfig, EmulatorServer
from tests.e2e.helpers import request_line

pytestmark = pytest.mark.slow

PROVIDER_KEY = "sk-provider-secret-0123456789"
MASTER_KEY = "sk-master-secret-9876543210"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _clean_env(home: Path) -> dict[str, str]:
    """The environment without any batchyard or provider setting, HOME in ``home``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BATCHYARD_", "OPENAI_", "AZURE_"))}
    env.update({"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
                "COLUMNS": "200"})
    return env


@dataclass
class Server:
    """A `batchyard up` process."""

    url: str
    log: Path
    data_dir: Path
    proc: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    cfg = EmulatorConfig(validation_delay=0.0, finalize_delay=0.0, cancel_grace=0.0,
                         request_latency=0.005, api_keys=(PROVIDER_KEY,))
    with EmulatorServer(cfg) as srv:
        yield srv


@pytest.fixture(scope="module")
def start_up(tmp_path_factory: pytest.TempPathFactory,
             emulator: EmulatorServer) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(name: str, provider_key: str | None) -> Server:
        root = tmp_path_factory.mktemp(name)
        env = _clean_env(root)
        env.update({"BATCHYARD_DATA_DIR": str(root / "data"), "BATCHYARD_MASTER_KEY": MASTER_KEY,
                    "BATCHYARD_PIPELINE__POLL_MIN_SECONDS": "0.3",
                    "BATCHYARD_PIPELINE__TICK_SECONDS": "0.3",
                    "BATCHYARD_PIPELINE__QUEUE": f"walkaway-{name}-{os.getpid()}"})
        if provider_key is not None:
            env["OPENAI_API_KEY"] = provider_key
            env["OPENAI_API_BASE"] = f"{emulator.base_url}/v1"
        port = _free_port()
        log = root / "up.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "batchyard", "up", "--port",
                                     str(port), "--concurrency", "4"], env=env, cwd=root,
                                    stdout=out, stderr=subprocess.STDOUT)
        server = Server(f"http://127.0.0.1:{port}", log, root / "data", proc)
        servers.append(server)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(server.url + "/health/liveness", timeout=2).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            assert proc.poll() is None, server.output()
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.3)

    yield start
    for server in servers:
        server.proc.terminate()
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="module")
def server(start_up: Callable[..., Server]) -> Server:
    return start_up("good", PROVIDER_KEY)


@pytest.fixture()
def elsewhere(tmp_path: Path) -> Path:
    """A directory (and HOME) that has nothing to do with the server's."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def _cli(args: list[str], *, cwd: Path, url: str | None = None,
         **env: str) -> subprocess.CompletedProcess[str]:
    full = _clean_env(cwd)
    if url is not None:
        full.update({"BATCHYARD_URL": url, "BATCHYARD_API_KEY": MASTER_KEY})
    full.update(env)
    return subprocess.run([sys.executable, "-m", "batchyard", *args], env=full, cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def _jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def test_run_wait_exit_codes_and_reasons_from_another_directory(
        server: Server, emulator: EmulatorServer, elsewhere: Path) -> None:
    good = _jsonl(elsewhere / "good.jsonl", [request_line(f"ok-{i}") for i in range(5)])
    done = _cli(["run", str(good), "--wait"], cwd=elsewhere, url=server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 5 requests succeeded" in done.stdout

    mixed = _jsonl(elsewhere / "mixed.jsonl", [
        request_line("fine-1"), request_line("bad-1", x_emulator={"status": 400}),
        request_line("fine-2"), request_line("bad-2", x_emulator={"status": 400})])
    partial = _cli(["run", str(mixed), "--wait"], cwd=elsewhere, url=server.url)
    assert partial.returncode == 3, partial.stdout + partial.stderr
    assert "completed with failures: 2 succeeded, 2 failed of 4" in partial.stdout
    assert "2 failed with" in partial.stdout and "bad-1, bad-2" in partial.stdout
    batch_id = partial.stdout.split()[1]

    failed_only = _cli(["results", batch_id, "--failed-only", "-o", "failed.jsonl"],
                       cwd=elsewhere, url=server.url)
    assert failed_only.returncode == 0, failed_only.stderr
    rows = [orjson.loads(line) for line in (elsewhere / "failed.jsonl").read_bytes().splitlines()]
    assert [r["custom_id"] for r in rows] == ["bad-1", "bad-2"]
    everything = _cli(["results", batch_id], cwd=elsewhere, url=server.url)
    assert [orjson.loads(line)["custom_id"] for line in everything.stdout.splitlines()] == [
        "fine-1", "bad-1", "fine-2", "bad-2"]  # input order

    shown = _cli(["status", batch_id, "--json"], cwd=elsewhere, url=server.url)
    report = orjson.loads(shown.stdout)
    assert report["status"] == "completed" and report["exit_code"] == 3
    assert report["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
    assert [g["count"] for g in report["failures"]] == [2]
    (part,) = report["parts"]  # over the API's parts route
    assert part["deployment"] == "openai" and part["status"] == "ingested"
    assert part["provider_batch_id"].startswith("batch_") and part["request_count"] == 4

    emulator.emulator.set_faults(fail_validation_next=1, fail_validation_code="invalid_json_line")
    rejected = _cli(["run", str(good), "--wait"], cwd=elsewhere, url=server.url)
    assert rejected.returncode == 4, rejected.stdout + rejected.stderr
    assert "ended failed" in rejected.stdout
    assert "error invalid_json_line (line 1)" in rejected.stdout

    refused = _cli(["cancel", batch_id], cwd=elsewhere, url=server.url)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: {server.url}/v1/batches/{batch_id}/cancel: Cannot cancel a batch with "
        "status 'completed'."]
    # The remote commands never made a local data dir, here or in HOME.
    assert not (elsewhere / ".local" / "share" / "batchyard").exists()


def test_the_local_cli_reads_the_same_data_dir_with_parts_and_reasons(
        server: Server, elsewhere: Path) -> None:
    mixed = _jsonl(elsewhere / "mixed.jsonl", [request_line("x-1"),
                                               request_line("x-2", x_emulator={"status": 400})])
    ran = _cli(["run", str(mixed), "--wait"], cwd=elsewhere,
               BATCHYARD_DATA_DIR=str(server.data_dir))
    assert ran.returncode == 3, ran.stdout + ran.stderr
    batch_id = ran.stdout.split()[1]
    shown = _cli(["status", batch_id], cwd=elsewhere, BATCHYARD_DATA_DIR=str(server.data_dir))
    assert shown.returncode == 0, shown.stderr
    assert "openai" in shown.stdout and "ingested" in shown.stdout  # the part's deployment
    assert "1 failed with" in shown.stdout and "x-2" in shown.stdout


def test_up_prints_a_start_line_and_lifecycle_events_and_never_a_secret(
        server: Server, elsewhere: Path) -> None:
    good = _jsonl(elsewhere / "one.jsonl", [request_line("only")])
    ran = _cli(["run", str(good), "--wait"], cwd=elsewhere, url=server.url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    batch_id = ran.stdout.split()[1]
    out = server.output()
    port = server.url.rsplit(":", 1)[1]
    start = next(line for line in out.splitlines() if line.startswith("batchyard up:"))
    assert f"api http://127.0.0.1:{port}" in start
    assert f"data dir {server.data_dir}" in start and "broker sqla+sqlite" in start
    assert "deployments openai (openai, any model)" in start and "concurrency 4" in start
    story = [line for line in out.splitlines() if "batchyard.pipeline" in line]
    for event in (f"batch {batch_id} created from file", f"batch {batch_id} validated",
                  "(1 requests) submitted to deployment openai",
                  f"batch {batch_id} part 1 ingested",
                  f"batch {batch_id} completed: 1 completed, 0 failed of 1 requests"):
        assert any(event in line for line in story), (event, story)
    assert PROVIDER_KEY not in out and MASTER_KEY not in out


def test_health_and_the_warnings_of_up(start_up: Callable[..., Server], server: Server,
                                       elsewhere: Path) -> None:
    healthy = _cli(["health"], cwd=elsewhere, url=server.url)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "yes" in healthy.stdout

    bad_key = start_up("badkey", "sk-not-the-right-one")
    unhealthy = _cli(["health"], cwd=elsewhere, url=bad_key.url)
    assert unhealthy.returncode == 1
    assert "NO" in unhealthy.stdout and "401" in unhealthy.stdout
    deadline = time.monotonic() + 30
    while "deployment.unhealthy" not in bad_key.output() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "deployment.unhealthy" in bad_key.output() and "401" in bad_key.output()

    empty = start_up("nodeployment", None)
    none = _cli(["health"], cwd=elsewhere, url=empty.url)
    assert none.returncode == 1
    assert "no deployment is configured" in none.stderr
    assert "no deployment is configured" in empty.output()


def test_a_command_without_a_database_says_where_it_looked(tmp_path: Path) -> None:
    data_dir = tmp_path / "nothing-here"
    for command in (["status"], ["results", "batch_x"], ["keys", "list"]):
        result = CliRunner().invoke(app, command, env={"BATCHYARD_DATA_DIR": str(data_dir),
                                                       "BATCHYARD_DATABASE_URL": None,
                                                       "BATCHYARD_URL": None})
        assert result.exit_code == 1, result.output
        assert f"no batchyard database at {data_dir / 'batchyard.db'}" in result.output
    assert not data_dir.exists()


def test_an_unreachable_server_is_one_line(elsewhere: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = _cli(["status"], cwd=elsewhere, url=url)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"error: cannot reach the batchyard server at {url}")
    assert "Traceback" not in result.stderr
