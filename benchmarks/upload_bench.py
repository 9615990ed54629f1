"""A 200 MB ``POST /v1/files`` to batchyard next to the same upload to the emulator.

Usage: .venv/bin/python benchmarks/upload_bench.py [--database postgres|sqlite]
       [--storage database|local|s3] [--size-mb 200] [--rounds 3] [--workers 1]
       [--input FILE]

Writes a realistic, non-repetitive JSONL (chat requests whose text is cut from a large pool
of random pseudo-words, so no compressor finds long repeats: it compresses about as well as
ordinary English text) to a temp dir, prints its zlib ratio, then starts ``batchyard serve``
(``--database postgres``: a PostgreSQL database created for the run plus the Redis broker;
``sqlite``: the embedded default in a temporary data dir) with the chosen file store, and
``batchyard emulator`` (the provider-direct figure), both as subprocesses on free ports.
``--storage s3`` also starts a local S3-compatible server (moto's server mode) and points the
store at a bucket on it.

Each round uploads the file to the emulator and to batchyard with the same streaming httpx
client (the order alternates between rounds), and prints both times, the ratio
batchyard / emulator (target <= 1.5) and the serving process's peak RSS during the upload
(VmHWM after ``clear_refs``) next to its RSS before it, and the CPU seconds each server
process used for its upload (and, for batchyard, the CPU it used after answering, e.g.
SQLite's WAL checkpoint; the next upload starts only once both servers are idle again),
plus on PostgreSQL the CPU of the bench database's backends (those alive at the round's
end; the WAL writer and checkpointer are not counted). The upload is read back from
batchyard once and compared byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import string
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_bench import (  # a sibling script, not a package
    MASTER,
    REDIS,
    bench_database,
    free_port,
    process,
    reset_peak,
    vm_hwm_mb,
    vm_rss_mb,
)

MB = 1_000_000
POOL_BYTES = 16 * MB


def word_pool(rng: random.Random, size: int) -> str:
    """``size`` characters of random pseudo-words (a few thousand of them, Zipf-ish use)."""
    letters = string.ascii_lowercase
    vocabulary = ["".join(rng.choices(letters, k=rng.randint(2, 11))) for _ in range(20_000)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    parts: list[str] = []
    total = 0
    while total < size:
        words = rng.choices(vocabulary, weights=weights, k=10_000)
        chunk = " ".join(words) + ". "
        parts.append(chunk)
        total += len(chunk)
    return "".join(parts)[:size]


def make_jsonl(path: Path, size_bytes: int, seed: int = 14) -> int:
    """Chat requests of varied length cut from a random text pool; returns the line count."""
    rng = random.Random(seed)
    pool = word_pool(rng, POOL_BYTES)
    written = lines = 0
    with path.open("wb", buffering=1 << 20) as out:
        while written < size_bytes:
            length = rng.randint(200, 2400)
            start = rng.randrange(0, len(pool) - length)
            line = orjson.dumps({
                "custom_id": f"request-{lines}-{rng.getrandbits(32):08x}", "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "max_tokens": rng.randint(50, 800),
                         "temperature": round(rng.random(), 2), "messages": [
                             {"role": "system", "content": "You are a helpful assistant."},
                             {"role": "user", "content": pool[start:start + length]}]}}) + b"\n"
            out.write(line)
            written += len(line)
            lines += 1
    return lines


def zlib_ratio(path: Path, sample: int = 8 * MB) -> float:
    with path.open("rb") as fh:
        data = fh.read(sample)
    return len(data) / len(zlib.compress(data, 6))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def upload(client: httpx.Client, base: str, path: Path) -> tuple[str, float]:
    """Stream ``path`` as multipart to ``base``/v1/files; returns (file id, seconds)."""
    started = time.perf_counter()
    with path.open("rb") as fh:
        response = client.post(f"{base}/v1/files", data={"purpose": "batch"},
                               files={"file": (path.name, fh, "application/jsonl")})
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return str(response.json()["id"]), seconds


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def settle(pids: list[int], quiet: float = 0.01, timeout: float = 30.0) -> float:
    """Wait until ``pids`` use under ``quiet`` CPU seconds per 0.2 s; return what they used."""
    start = last = cpu_seconds(pids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = cpu_seconds(pids)
        if now - last < quiet:
            break
        last = now
    return last - start


def pg_backend_pids(db_url: str | None) -> list[int]:
    """PostgreSQL backends connected to the bench database (none on SQLite)."""
    if db_url is None:
        return []
    import sqlalchemy as sa

    name = db_url.rsplit("/", 1)[1]
    engine = sa.create_engine(db_url.rsplit("/", 1)[0] + "/postgres")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                                {"d": name}).scalars().all()
    finally:
        engine.dispose()
    return [int(pid) for pid in rows if psutil.pid_exists(pid)]


def server_pids(pid: int) -> list[int]:
    """The uvicorn process and its children (with --workers N the children serve)."""
    return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]


@contextmanager
def s3_server(env: dict[str, str]) -> Iterator[None]:
    """moto's S3-compatible server on a free port, a fresh bucket, the store pointed at it."""
    import boto3

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with process(command, env, f"{url}/moto-api/"):
        bucket = "batchyard-bench"
        boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench",
                     ).create_bucket(Bucket=bucket)
        env.update(BATCHYARD_S3__BUCKET=bucket, BATCHYARD_S3__ENDPOINT_URL=url,
                   BATCHYARD_S3__REGION="us-east-1", BATCHYARD_S3__ACCESS_KEY_ID="bench",
                   BATCHYARD_S3__SECRET_ACCESS_KEY="bench")
        yield


def run(args: argparse.Namespace, path: Path, tmp: Path) -> None:
    api_port, emu_port = free_port(), free_port()
    api, emu = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{emu_port}"
    size_mb = path.stat().st_size / MB
    exe = [sys.executable, "-m", "batchyard"]
    with ExitStack() as stack:
        db_url = stack.enter_context(bench_database(args.database))
        env = {**os.environ, "BATCHYARD_MASTER_KEY": MASTER, "BATCHYARD_DATA_DIR": str(tmp),
               "BATCHYARD_STORAGE_BACKEND": args.storage,
               "BATCHYARD_API__MAX_UPLOAD_BYTES": str(int(size_mb * MB) + MB)}
        for name in ("BATCHYARD_DATABASE_URL", "BATCHYARD_BROKER_URL"):
            env.pop(name, None)
        if db_url is not None:
            env.update(BATCHYARD_DATABASE_URL=db_url, BATCHYARD_BROKER_URL=REDIS)
        if args.storage == "s3":
            stack.enter_context(s3_server(env))
        serve = [*exe, "serve", "--port", str(api_port), "--workers", str(args.workers)]
        emulator = [*exe, "emulator", "--port", str(emu_port),
                    "--max-file-mb", str(int(size_mb) + 10)]
        api_proc = stack.enter_context(process(serve, env, f"{api}/health"))
        emu_proc = stack.enter_context(process(emulator, env, f"{emu}/v1/batches"))
        client = stack.enter_context(httpx.Client(
            timeout=600, headers={"Authorization": f"Bearer {MASTER}"}))
        print(f"database={args.database} storage={args.storage} workers={args.workers} "
              f"file={size_mb:.1f} MB load average={os.getloadavg()[0]:.2f}")
        ratios = []
        file_id = ""
        for round_no in range(args.rounds):
            pids = server_pids(api_proc.pid)
            idle = max(vm_rss_mb(p) for p in pids)
            for p in pids:
                reset_peak(p)
            times: dict[str, float] = {}
            cpu: dict[str, float] = {}
            order = [("emulator", emu, [emu_proc.pid]), ("batchyard", api, pids)]
            backends = pg_backend_pids(db_url)
            db_before = cpu_seconds(backends)
            after_answer = 0.0
            for name, base, owned in (order if round_no % 2 == 0 else order[::-1]):
                before = cpu_seconds(owned)
                file_id_here, times[name] = upload(client, base, path)
                cpu[name] = cpu_seconds(owned) - before
                # Work a server does after answering (SQLite's WAL checkpoint) must not run
                # into the other server's upload: wait until this one is idle again.
                settled = settle(owned + backends)
                if name == "batchyard":
                    file_id = file_id_here
                    after_answer = settled
            new_backends = [p for p in pg_backend_pids(db_url) if p not in backends]
            db_cpu = cpu_seconds(backends) - db_before + cpu_seconds(new_backends)
            peak = max(vm_hwm_mb(p) for p in pids)
            ratio = times["batchyard"] / times["emulator"]
            ratios.append(ratio)
            print(f"round {round_no + 1}: batchyard {times['batchyard']:6.2f} s "
                  f"({size_mb / times['batchyard']:6.1f} MB/s)  emulator "
                  f"{times['emulator']:6.2f} s ({size_mb / times['emulator']:6.1f} MB/s)  "
                  f"ratio {ratio:5.2f} (target <= 1.5)  server RSS before {idle:6.1f} MB, "
                  f"peak {peak:6.1f} MB  server CPU batchyard {cpu['batchyard']:.2f} s "
                  f"(+{after_answer:.2f} s after its answer) emulator {cpu['emulator']:.2f} s"
                  + (f", PostgreSQL backends {db_cpu:.2f} s" if db_url else ""))
        check_roundtrip(client, api, file_id, path)
        print(f"ratios: {', '.join(f'{r:.2f}' for r in ratios)}; "
              f"target <= 1.5 met in {sum(r <= 1.5 for r in ratios)} of {len(ratios)}")


def check_roundtrip(client: httpx.Client, api: str, file_id: str, path: Path) -> None:
    digest = hashlib.sha256()
    with client.stream("GET", f"{api}/v1/files/{file_id}/content") as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            digest.update(chunk)
    same = digest.hexdigest() == sha256_of(path)
    print(f"read back from batchyard: {'identical' if same else 'DIFFERENT'}")
    if not same:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--storage", choices=("database", "local", "s3"), default="database")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--input", type=Path, default=None,
                        help="upload this file (e.g. one made by an earlier run) instead of "
                             "generating one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchyard-upload-") as tmp:
        if args.input is not None:
            path = args.input
            print(f"using {path} ({path.stat().st_size / MB:.1f} MB); "
                  f"zlib ratio {zlib_ratio(path):.2f}:1")
        else:
            path = Path(tmp) / "input.jsonl"
            started = time.perf_counter()
            lines = make_jsonl(path, args.size_mb * MB)
            print(f"generated {path.stat().st_size / MB:.1f} MB, {lines} lines in "
                  f"{time.perf_counter() - started:.1f} s; zlib ratio {zlib_ratio(path):.2f}:1")
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        run(args, path, data_dir)


if __name__ == "__main__":
    main()
