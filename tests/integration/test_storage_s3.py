"""S3FileStore against a local S3-compatible server: moto's server mode, in a subprocess.

The store talks real HTTP to it through boto3 (signing, multipart uploads, ranged bodies),
so this checks the store's use of the S3 API, not a mock of it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batchyard.config import S3Settings, Settings
from batchyard.errors import ConfigError, PayloadTooLargeError, StorageError
from batchyard.storage import build_store
from batchyard.storage.s3 import MIN_PART_BYTES, S3FileStore, client_from_settings
from tests.unit.storage.stores import StoreContract, pieces

READ_CHUNK = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """A moto S3 server on a free loopback port for this module."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def settings(s3_url: str) -> S3Settings:
    bucket = f"by-{uuid.uuid4().hex[:12]}"
    s3 = S3Settings(bucket=bucket, prefix="files/", endpoint_url=s3_url, region="us-east-1",
                    access_key_id="test-key", secret_access_key="test-secret")
    client_from_settings(s3).create_bucket(Bucket=bucket)
    return s3


@pytest.fixture()
def client(settings: S3Settings) -> Any:
    return client_from_settings(settings)


def object_names(client: Any, bucket: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def open_uploads(client: Any, bucket: str) -> list[str]:
    listed = client.list_multipart_uploads(Bucket=bucket)
    return [item["Key"] for item in listed.get("Uploads", [])]


class TestS3FileStore(StoreContract):
    max_chunk = READ_CHUNK

    @pytest.fixture()
    def store(self, client: Any, settings: S3Settings) -> S3FileStore:
        return S3FileStore(client, settings.bucket, prefix=settings.prefix,
                           part_bytes=MIN_PART_BYTES, read_bytes=READ_CHUNK)


def test_a_large_file_goes_up_in_parts_and_comes_back_whole(client: Any,
                                                           settings: S3Settings) -> None:
    store = S3FileStore.from_settings(settings.model_copy(update={"part_bytes":
                                                                  MIN_PART_BYTES}))
    data = os.urandom(2 * MIN_PART_BYTES + 12345)
    assert store.put_stream("input/big", pieces(data, 65536)) == (
        len(data), hashlib.sha256(data).hexdigest())
    head = client.head_object(Bucket=settings.bucket, Key="files/input/big")
    assert head["ContentLength"] == len(data)
    assert "-3" in head["ETag"]  # a multipart ETag names its part count
    assert hashlib.sha256(b"".join(store.open_stream("input/big"))).hexdigest() == \
        hashlib.sha256(data).hexdigest()
    assert open_uploads(client, settings.bucket) == []


def test_a_multipart_put_that_fails_is_aborted_and_keeps_the_old_object(
        client: Any, settings: S3Settings) -> None:
    store = S3FileStore.from_settings(settings.model_copy(update={"part_bytes":
                                                                  MIN_PART_BYTES}))
    store.put_stream("input/k", [b"old bytes"])

    def broken() -> Iterator[bytes]:
        yield os.urandom(MIN_PART_BYTES)
        yield os.urandom(MIN_PART_BYTES)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put_stream("input/k", broken())
    assert b"".join(store.open_stream("input/k")) == b"old bytes"
    assert open_uploads(client, settings.bucket) == []


def test_max_bytes_stops_a_multipart_put_and_leaves_nothing(client: Any,
                                                           settings: S3Settings) -> None:
    store = S3FileStore.from_settings(settings.model_copy(update={"part_bytes":
                                                                  MIN_PART_BYTES}))
    with pytest.raises(PayloadTooLargeError):
        store.put_stream("input/big", pieces(b"z" * (3 * MIN_PART_BYTES), 1 << 20),
                         max_bytes=2 * MIN_PART_BYTES)
    assert object_names(client, settings.bucket) == []
    assert open_uploads(client, settings.bucket) == []


def test_keys_live_under_the_prefix(client: Any, settings: S3Settings) -> None:
    store = S3FileStore.from_settings(settings)
    store.put_stream("input/abc", [b"x"])
    assert object_names(client, settings.bucket) == ["files/input/abc"]


def test_build_store_picks_s3_from_settings(settings: S3Settings, tmp_path: Any) -> None:
    store = build_store(Settings(data_dir=tmp_path, storage_backend="s3", s3=settings),
                        engine=None)  # type: ignore[arg-type]  # s3 needs no engine
    assert isinstance(store, S3FileStore)
    store.put_stream("input/one", [b"hello"])
    assert b"".join(store.read("input/one")) == b"hello"


def test_a_missing_bucket_is_a_storage_error_not_a_crash(settings: S3Settings) -> None:
    store = S3FileStore.from_settings(settings.model_copy(update={"bucket": "no-such-bkt"}))
    with pytest.raises(StorageError):
        store.put_stream("input/x", [b"x"])
    with pytest.raises(StorageError):
        store.open_stream("input/x")


@pytest.mark.parametrize("update", [{"bucket": ""}, {"part_bytes": 1024}])
def test_bad_s3_settings_are_refused(settings: S3Settings, update: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        S3FileStore.from_settings(settings.model_copy(update=update))


def test_an_unreachable_server_is_a_storage_error(settings: S3Settings) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{_free_port()}",
                          region_name="us-east-1", aws_access_key_id="k",
                          aws_secret_access_key="s",
                          config=Config(retries={"total_max_attempts": 1}))
    store = S3FileStore(client, settings.bucket)
    for call in (lambda: store.put_stream("input/x", [b"x"]),
                 lambda: store.open_stream("input/x"), lambda: store.exists("input/x"),
                 lambda: store.delete("input/x")):
        with pytest.raises(StorageError):
            call()
