"""Python SDK: OpenAI-style file and batch calls made straight to a provider (no server).

The names and arguments are the ones LiteLLM users already write::

    import batchyard
    file_obj = batchyard.create_file(file=open("in.jsonl", "rb"), purpose="batch",
                                     custom_llm_provider="openai")
    batch = batchyard.create_batch(completion_window="24h", endpoint="/v1/chat/completions",
                                   input_file_id=file_obj.id, custom_llm_provider="openai")
    batch = await batchyard.aretrieve_batch(batch_id=batch.id, custom_llm_provider="openai")

Credentials come from the arguments (``api_key``, ``api_base``, ``api_version``) or else from
:class:`batchyard.config.Settings` (``OPENAI_API_KEY``, ``OPENAI_API_BASE``,
``AZURE_API_KEY``, ``AZURE_API_BASE``, ``AZURE_API_VERSION``). The ``a``-prefixed forms
run on ``httpx.AsyncClient``. Errors are :mod:`batchyard.errors` ``Provider*`` classes.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import BinaryIO, Literal, TypedDict, Unpack

from pydantic import SecretStr

from batchyard.config import HttpSettings, Settings
from batchyard.errors import ConfigError, InvalidInputError
from batchyard.providers import ProviderConfig, build_async_provider, build_provider
from batchyard.providers.client import AsyncProviderClient, SyncProviderClient
from batchyard.sdk_models import (
    Batch,
    BatchList,
    FileContent,
    FileDeleted,
    FileList,
    FileObject,
    batch_object,
    batch_page,
    file_object,
    file_page,
)

ProviderName = Literal["openai", "azure"]
#: ``open(path, "rb")``, a path, raw bytes, or ``(filename, file or bytes)``.
FileInput = BinaryIO | str | Path | bytes | tuple[str, BinaryIO | bytes]

__all__ = [
    "Batch",
    "BatchList",
    "ClientOptions",
    "FileContent",
    "FileDeleted",
    "FileList",
    "FileObject",
    "acancel_batch",
    "acreate_batch",
    "acreate_file",
    "afile_content",
    "afile_delete",
    "afile_list",
    "afile_retrieve",
    "alist_batches",
    "aretrieve_batch",
    "cancel_batch",
    "create_batch",
    "create_file",
    "file_content",
    "file_delete",
    "file_list",
    "file_retrieve",
    "list_batches",
    "provider_config",
    "retrieve_batch",
]


class ClientOptions(TypedDict, total=False):
    """Keyword options every SDK call takes (all optional; env via Settings otherwise)."""

    api_key: str | None
    api_base: str | None
    #: Azure: a dated version selects the legacy surface; None / "v1" / "preview" the v1 one.
    api_version: str | None
    #: Azure: a Microsoft Entra token, sent as a bearer token instead of ``api-key``.
    azure_ad_token: str | None
    #: Configuration to use instead of reading the environment (also gives HTTP settings).
    settings: Settings | None


def provider_config(custom_llm_provider: str = "openai",
                    **options: Unpack[ClientOptions]) -> ProviderConfig:
    """The adapter config for one call: explicit options first, then Settings (env)."""
    settings = options.get("settings") or Settings()
    api_key, api_base = options.get("api_key"), options.get("api_base")
    ad_token = options.get("azure_ad_token")
    kind: ProviderName
    if custom_llm_provider == "openai":
        kind = "openai"
        key = _secret(api_key) or settings.openai_api_key
        base, version, env = api_base or settings.openai_api_base, None, "OPENAI_API_KEY"
    elif custom_llm_provider == "azure":
        kind = "azure"
        key = _secret(api_key) or settings.azure_api_key
        base, env = api_base or settings.azure_api_base, "AZURE_API_KEY"
        version = options.get("api_version") or settings.azure_api_version
    else:
        raise InvalidInputError(f"custom_llm_provider must be 'openai' or 'azure', "
                                f"not {custom_llm_provider!r}", param="custom_llm_provider")
    if key is None and not ad_token:
        raise ConfigError(f"no API key for {custom_llm_provider}: pass api_key= or set {env}")
    return ProviderConfig(kind=kind, api_key=key, api_base=base,
                          api_version=version, azure_ad_token=_secret(ad_token))


def _secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value else None


def _http(options: ClientOptions) -> HttpSettings:
    return (options.get("settings") or Settings()).http


@contextmanager
def _sync(provider: str, options: ClientOptions) -> Iterator[SyncProviderClient]:
    config = provider_config(provider, **options)
    with build_provider(config, _http(options)) as client:
        yield client


@asynccontextmanager
async def _async(provider: str, options: ClientOptions) -> AsyncIterator[AsyncProviderClient]:
    config = provider_config(provider, **options)
    async with build_async_provider(config, _http(options)) as client:
        yield client


def _upload_source(file: FileInput) -> tuple[BinaryIO | Path, str | None]:
    """(source, filename) for the adapter; the caller's open file is not closed."""
    if isinstance(file, tuple):
        filename, body = file
        return (io.BytesIO(body) if isinstance(body, bytes) else body), filename
    if isinstance(file, bytes):
        return io.BytesIO(file), "upload.jsonl"
    if isinstance(file, str | Path):
        return Path(file), None
    return file, None


# -- files ----------------------------------------------------------------------------------
def create_file(file: FileInput, purpose: str = "batch",
                custom_llm_provider: ProviderName = "openai",
                **options: Unpack[ClientOptions]) -> FileObject:
    """Upload a file (streamed from disk or the open file) to the provider."""
    source, filename = _upload_source(file)
    with _sync(custom_llm_provider, options) as provider:
        return file_object(provider.upload_file(source, filename=filename, purpose=purpose))


async def acreate_file(file: FileInput, purpose: str = "batch",
                       custom_llm_provider: ProviderName = "openai",
                       **options: Unpack[ClientOptions]) -> FileObject:
    """Upload a file (streamed) to the provider, asynchronously."""
    source, filename = _upload_source(file)
    async with _async(custom_llm_provider, options) as provider:
        record = await provider.upload_file(source, filename=filename, purpose=purpose)
    return file_object(record)


def file_retrieve(file_id: str, custom_llm_provider: ProviderName = "openai",
                  **options: Unpack[ClientOptions]) -> FileObject:
    """Fetch a file object."""
    with _sync(custom_llm_provider, options) as provider:
        return file_object(provider.retrieve_file(file_id))


async def afile_retrieve(file_id: str, custom_llm_provider: ProviderName = "openai",
                         **options: Unpack[ClientOptions]) -> FileObject:
    """Fetch a file object, asynchronously."""
    async with _async(custom_llm_provider, options) as provider:
        return file_object(await provider.retrieve_file(file_id))


def file_list(custom_llm_provider: ProviderName = "openai", purpose: str | None = None,
              limit: int | None = None, after: str | None = None,
              **options: Unpack[ClientOptions]) -> FileList:
    """List files: one page when ``limit`` or ``after`` is given, else every page."""
    with _sync(custom_llm_provider, options) as provider:
        if limit is None and after is None:
            return FileList(data=[file_object(f) for f in provider.list_files(purpose=purpose)])
        return file_page(provider.list_files_page(purpose=purpose, limit=limit,
                                                       after=after))


async def afile_list(custom_llm_provider: ProviderName = "openai", purpose: str | None = None,
                     limit: int | None = None, after: str | None = None,
                     **options: Unpack[ClientOptions]) -> FileList:
    """List files asynchronously: one page when ``limit`` or ``after`` is given, else all."""
    async with _async(custom_llm_provider, options) as provider:
        if limit is None and after is None:
            files = [file_object(f) async for f in provider.list_files(purpose=purpose)]
            return FileList(data=files)
        page = await provider.list_files_page(purpose=purpose, limit=limit, after=after)
    return file_page(page)


def file_delete(file_id: str, custom_llm_provider: ProviderName = "openai",
                **options: Unpack[ClientOptions]) -> FileDeleted:
    """Delete a file."""
    with _sync(custom_llm_provider, options) as provider:
        return FileDeleted(id=file_id, deleted=provider.delete_file(file_id))


async def afile_delete(file_id: str, custom_llm_provider: ProviderName = "openai",
                       **options: Unpack[ClientOptions]) -> FileDeleted:
    """Delete a file, asynchronously."""
    async with _async(custom_llm_provider, options) as provider:
        return FileDeleted(id=file_id, deleted=await provider.delete_file(file_id))


def file_content(file_id: str, custom_llm_provider: ProviderName = "openai",
                 **options: Unpack[ClientOptions]) -> FileContent:
    """A file's bytes (input, output or error file)."""
    buffer = io.BytesIO()
    with _sync(custom_llm_provider, options) as provider:
        provider.download_file(file_id, buffer)
    return FileContent(file_id=file_id, content=buffer.getvalue())


async def afile_content(file_id: str, custom_llm_provider: ProviderName = "openai",
                        **options: Unpack[ClientOptions]) -> FileContent:
    """A file's bytes, asynchronously."""
    buffer = io.BytesIO()
    async with _async(custom_llm_provider, options) as provider:
        await provider.download_file(file_id, buffer)
    return FileContent(file_id=file_id, content=buffer.getvalue())


# -- batches --------------------------------------------------------------------------------
def create_batch(completion_window: str = "24h", endpoint: str = "/v1/chat/completions",
                 input_file_id: str | None = None,
                 custom_llm_provider: ProviderName = "openai",
                 metadata: dict[str, str] | None = None,
                 **options: Unpack[ClientOptions]) -> Batch:
    """Create a batch at the provider from an uploaded file."""
    file_id = _required_file(input_file_id)
    with _sync(custom_llm_provider, options) as provider:
        return batch_object(provider.create_batch(
            input_file_id=file_id, endpoint=endpoint, completion_window=completion_window,
            metadata=metadata))


async def acreate_batch(completion_window: str = "24h", endpoint: str = "/v1/chat/completions",
                        input_file_id: str | None = None,
                        custom_llm_provider: ProviderName = "openai",
                        metadata: dict[str, str] | None = None,
                        **options: Unpack[ClientOptions]) -> Batch:
    """Create a batch at the provider, asynchronously."""
    file_id = _required_file(input_file_id)
    async with _async(custom_llm_provider, options) as provider:
        record = await provider.create_batch(
            input_file_id=file_id, endpoint=endpoint, completion_window=completion_window,
            metadata=metadata)
    return batch_object(record)


def _required_file(input_file_id: str | None) -> str:
    if not input_file_id:
        raise InvalidInputError("input_file_id is required", param="input_file_id")
    return input_file_id


def retrieve_batch(batch_id: str, custom_llm_provider: ProviderName = "openai",
                   **options: Unpack[ClientOptions]) -> Batch:
    """Fetch a batch."""
    with _sync(custom_llm_provider, options) as provider:
        return batch_object(provider.retrieve_batch(batch_id))


async def aretrieve_batch(batch_id: str, custom_llm_provider: ProviderName = "openai",
                          **options: Unpack[ClientOptions]) -> Batch:
    """Fetch a batch, asynchronously."""
    async with _async(custom_llm_provider, options) as provider:
        return batch_object(await provider.retrieve_batch(batch_id))


def list_batches(after: str | None = None, limit: int | None = None,
                 custom_llm_provider: ProviderName = "openai",
                 **options: Unpack[ClientOptions]) -> BatchList:
    """One page of batches (``has_more`` and ``after`` for the next)."""
    with _sync(custom_llm_provider, options) as provider:
        return batch_page(provider.list_batches_page(limit=limit, after=after))


async def alist_batches(after: str | None = None, limit: int | None = None,
                        custom_llm_provider: ProviderName = "openai",
                        **options: Unpack[ClientOptions]) -> BatchList:
    """One page of batches, asynchronously."""
    async with _async(custom_llm_provider, options) as provider:
        return batch_page(await provider.list_batches_page(limit=limit, after=after))


def cancel_batch(batch_id: str, custom_llm_provider: ProviderName = "openai",
                 **options: Unpack[ClientOptions]) -> Batch:
    """Ask the provider to cancel a batch."""
    with _sync(custom_llm_provider, options) as provider:
        return batch_object(provider.cancel_batch(batch_id))


async def acancel_batch(batch_id: str, custom_llm_provider: ProviderName = "openai",
                        **options: Unpack[ClientOptions]) -> Batch:
    """Ask the provider to cancel a batch, asynchronously."""
    async with _async(custom_llm_provider, options) as provider:
        return batch_object(await provider.cancel_batch(batch_id))
