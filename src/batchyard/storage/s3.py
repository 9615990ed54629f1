"""An S3-compatible bucket (AWS S3, MinIO, Ceph, R2 ...) through boto3: for many hosts.

Small files go up in one ``PutObject``; larger ones as a multipart upload whose parts are
sent by a writer thread while the caller parses and hashes the next part. An object only
appears when its upload completes, so a reader never sees a partial file; a failed put
aborts the multipart upload. A process killed mid-upload leaves an incomplete multipart
upload behind (invisible, but stored): give the bucket a lifecycle rule that aborts
incomplete multipart uploads after a day.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import closing
from typing import Any

from batchyard.config import S3Settings
from batchyard.errors import ConfigError, StorageError
from batchyard.storage.base import (
    CHUNK_BYTES,
    Handoff,
    Meter,
    StoreShortcuts,
    check_key,
    rechunk,
)

#: S3 refuses multipart parts under 5 MiB (except the last one).
MIN_PART_BYTES = 5 * 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _is_s3_failure(exc: BaseException) -> bool:
    """An error from boto3/botocore (an S3 error answer, or no answer at all)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError)


def _describe(exc: BaseException) -> str:
    return _error_code(exc) or type(exc).__name__


def client_from_settings(settings: S3Settings) -> Any:
    """A boto3 S3 client for ``settings`` (ConfigError if boto3 is not installed)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ConfigError("storage_backend 's3' needs boto3: pip install 'batchyard[s3]'"
                          ) from exc
    key_id = settings.access_key_id.get_secret_value() if settings.access_key_id else None
    secret = (settings.secret_access_key.get_secret_value()
              if settings.secret_access_key else None)
    return boto3.client(
        "s3", endpoint_url=settings.endpoint_url, region_name=settings.region,
        aws_access_key_id=key_id, aws_secret_access_key=secret,
        config=Config(retries={"mode": "standard", "max_attempts": 5},
                      max_pool_connections=32))


class S3FileStore(StoreShortcuts):
    """Bytes under a key as one object ``prefix + key`` in ``bucket``."""

    def __init__(self, client: Any, bucket: str, *, prefix: str = "",
                 part_bytes: int = 8 * 1024 * 1024, read_bytes: int = CHUNK_BYTES) -> None:
        if not bucket:
            raise ConfigError("storage_backend 's3' needs a bucket (BATCHYARD_S3__BUCKET)")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.part_bytes = part_bytes
        self.read_bytes = read_bytes

    @classmethod
    def from_settings(cls, settings: S3Settings) -> S3FileStore:
        """The store described by ``settings`` (bucket, prefix, endpoint, credentials)."""
        if settings.part_bytes < MIN_PART_BYTES:
            raise ConfigError(f"s3.part_bytes must be at least {MIN_PART_BYTES} (S3's minimum)")
        return cls(client_from_settings(settings), settings.bucket, prefix=settings.prefix,
                   part_bytes=settings.part_bytes)

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put_stream(self, key: str, chunks: Iterable[bytes], *,
                   max_bytes: int | None = None) -> tuple[int, str]:
        """Store ``chunks`` under ``key``; visible only once complete. ``(size, sha256)``."""
        name = self._name(key)
        meter = Meter(max_bytes)
        first: bytes | None = None
        upload: _Multipart | None = None
        try:
            for piece in rechunk(chunks, self.part_bytes):
                meter.feed(piece)
                if first is None:
                    first = piece
                    continue
                if upload is None:
                    upload = _Multipart(self.client, self.bucket, name)
                    upload.put(first)
                upload.put(piece)
            if upload is None:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=first or b"")
            else:
                upload.complete()
        except BaseException as exc:
            if upload is not None:
                upload.abort()
            if _is_s3_failure(exc):
                raise StorageError(f"could not store {key!r}: {_describe(exc)}") from exc
            raise
        return meter.result()

    def open_stream(self, key: str) -> Iterator[bytes]:
        """The bytes under ``key`` in chunks of at most ``read_bytes``; StorageError if absent."""
        name = self._name(key)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
        except Exception as exc:
            if _error_code(exc) in _MISSING:
                raise StorageError(f"nothing stored under {key!r}") from exc
            if _is_s3_failure(exc):
                raise StorageError(f"could not read {key!r}: {_describe(exc)}") from exc
            raise
        return self._chunks(body)

    def _chunks(self, body: Any) -> Iterator[bytes]:
        with closing(body):
            yield from body.iter_chunks(self.read_bytes)

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when it is absent."""
        name = self._name(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            if _is_s3_failure(exc):
                raise StorageError(f"could not delete {key!r}: {_describe(exc)}") from exc
            raise

    def exists(self, key: str) -> bool:
        """Is an object stored under ``key``?"""
        name = self._name(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            if _error_code(exc) in _MISSING:
                return False
            if _is_s3_failure(exc):
                raise StorageError(f"could not look up {key!r}: {_describe(exc)}") from exc
            raise
        return True


class _Multipart:
    """One multipart upload whose parts a writer thread sends in order."""

    def __init__(self, client: Any, bucket: str, name: str) -> None:
        self.client, self.bucket, self.name = client, bucket, name
        created = client.create_multipart_upload(Bucket=bucket, Key=name)
        self.upload_id = str(created["UploadId"])
        self._writer: Handoff[bytes, list[dict[str, Any]]] = Handoff(
            self._send, depth=1, name="batchyard-s3-parts")

    def _send(self, pieces: Iterator[bytes]) -> list[dict[str, Any]]:
        parts = []
        for number, piece in enumerate(pieces, start=1):
            sent = self.client.upload_part(Bucket=self.bucket, Key=self.name,
                                           UploadId=self.upload_id, PartNumber=number,
                                           Body=piece)
            parts.append({"ETag": sent["ETag"], "PartNumber": number})
        return parts

    def put(self, piece: bytes) -> None:
        self._writer.put(piece)

    def complete(self) -> None:
        parts = self._writer.close()
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.name,
                                              UploadId=self.upload_id,
                                              MultipartUpload={"Parts": parts})

    def abort(self) -> None:
        self._writer.abort()
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.name,
                                               UploadId=self.upload_id)
        except Exception:  # best effort: a lifecycle rule removes what is left
            pass
