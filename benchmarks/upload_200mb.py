"""Upload a 200 MB JSONL through the provider adapter to the emulator (issue 2).

Usage: .venv/bin/python benchmarks/upload_200mb.py [--size-mb 200] [--flavor openai|azure]

Writes realistic chat-completion request lines to a temp dir, starts ``python -m batchyard
emulator`` as a subprocess on a free port, uploads the file with the sync adapter (streamed
multipart), then downloads it back (streamed to a file), and prints MB/s plus the peak RSS
(VmHWM) of this client and of the emulator process. Target: under 100 MB each.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from batchyard.config import HttpSettings
from batchyard.providers import ProviderConfig, build_provider

MB = 1_000_000
WORDS = ("please summarise translate classify the following customer message about an order "
         "delivery refund invoice account password subscription upgrade warranty product "
         "that arrived late damaged missing incomplete and explain next steps politely").split()


def make_jsonl(path: Path, size_bytes: int, seed: int = 11) -> int:
    """Chat requests of varied length until ``size_bytes``; returns the line count."""
    rng = random.Random(seed)
    written = lines = 0
    with path.open("w", encoding="utf-8", buffering=1 << 20) as out:
        while written < size_bytes:
            text = " ".join(rng.choices(WORDS, k=rng.randint(40, 260)))
            line = json.dumps({
                "custom_id": f"request-{lines}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "max_tokens": 400, "messages": [
                    {"role": "system", "content": "You are a helpful support assistant."},
                    {"role": "user", "content": text}]}}) + "\n"
            out.write(line)
            written += len(line.encode())
            lines += 1
    return lines


def vm_hwm_mb(pid: int | str = "self") -> float:
    """Peak resident set size (VmHWM) of a process, in MB."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) * 1024 / MB
    raise RuntimeError("no VmHWM in /proc status")


def reset_peak(pid: int | str = "self") -> None:
    """Reset VmHWM to the current RSS (Linux clear_refs "5"), so peaks are per phase."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(flavor: str, port: int, max_mb: int) -> subprocess.Popen[bytes]:
    """``python -m batchyard emulator`` on ``port``; returns once it answers."""
    command = [sys.executable, "-m", "batchyard", "emulator", "--port", str(port),
               "--flavor", flavor, "--max-file-mb", str(max_mb)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=1).raise_for_status()
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the emulator did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--flavor", choices=("openai", "azure"), default="openai")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchyard-bench-") as tmp:
        path = Path(tmp) / "input.jsonl"
        started = time.perf_counter()
        lines = make_jsonl(path, args.size_mb * MB)
        size = path.stat().st_size
        print(f"generated {size / MB:.1f} MB, {lines} lines in "
              f"{time.perf_counter() - started:.1f}s: {path}")
        run(path, size, args.flavor)


def run(path: Path, size: int, flavor: str) -> None:
    port = free_port()
    emulator = start_emulator(flavor, port, max_mb=size // (1024 * 1024) + 2)
    try:
        base = f"http://127.0.0.1:{port}" + ("/v1" if flavor == "openai" else "")
        config = ProviderConfig(kind=flavor, api_key="sk-bench", api_base=base,
                                api_version="2024-10-21" if flavor == "azure" else None)
        emulator_idle = vm_hwm_mb(emulator.pid)
        reset_peak()
        client_before = vm_hwm_mb()
        with build_provider(config, HttpSettings(read_timeout=300)) as provider:
            started = time.perf_counter()
            uploaded = provider.upload_file(path)
            up_seconds = time.perf_counter() - started
            assert uploaded.bytes == size, (uploaded.bytes, size)
            client_upload, emulator_upload = vm_hwm_mb(), vm_hwm_mb(emulator.pid)
            started = time.perf_counter()
            with (path.parent / "copy.jsonl").open("wb") as sink:
                copied = provider.download_file(uploaded.id, sink)
            down_seconds = time.perf_counter() - started
            assert copied == size
        report(size, flavor, up_seconds, down_seconds, client_before, client_upload,
               vm_hwm_mb(), emulator_idle, emulator_upload, vm_hwm_mb(emulator.pid))
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def report(size: int, flavor: str, up: float, down: float, client_before: float,
           client_upload: float, client_end: float, emulator_idle: float,
           emulator_upload: float, emulator_end: float) -> None:
    print(f"flavor={flavor} file={size / MB:.1f} MB")
    print(f"upload:   {up:.2f}s  {size / MB / up:.1f} MB/s")
    print(f"download: {down:.2f}s  {size / MB / down:.1f} MB/s")
    print(f"client peak RSS:   {client_upload:.1f} MB during upload "
          f"(before upload {client_before:.1f} MB; after download {client_end:.1f} MB)")
    print(f"emulator peak RSS: {emulator_upload:.1f} MB during upload "
          f"(idle {emulator_idle:.1f} MB; after download {emulator_end:.1f} MB)")
    ok = client_end < 100 and emulator_end < 100
    print(f"target < 100 MB each: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
