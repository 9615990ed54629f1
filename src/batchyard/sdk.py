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
``AZURE_API_KEY``, ``AZURE_API_BASE``, ``AZURE_API_VERSION``, ``ANTHROPIC_API_KEY``,
``ANTHROPIC_API_BASE``). The ``a``-prefixed forms run on ``httpx.AsyncClient``. Errors are
:mod:`batchyard.errors` ``Provider*`` classes.

``custom_llm_provider="anthropic"`` runs Message Batches from the same OpenAI-format JSONL:
input files are checked and kept on this machine, requests are translated and sent inline,
and batches and results come back OpenAI-shaped (see :mod:`batchyard.sdk_anthropic`).

``server_url=`` (a running batchyard server, e.g. ``http://localhost:4000``) sends every call
to that server instead, under the prefix that forces the provider (``/openai/v1``,
``/azure/v1``, ``/anthropic/v1``); the key is ``api_key=`` (a virtual key or the master key),
else ``BATCHYARD_MASTER_KEY``.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypedDict, Unpack

from pydantic import SecretStr

from batchyard import sdk_anthropic
from batchyard.config import HttpSettings, Settings
from batchyard.errors import ConfigError, InvalidInputError
from batchyard.providers import (
    ProviderConfig,
    build_anthropic_provider,
    build_async_anthropic_provider,
    build_async_provider,
    build_provider,
)
from batchyard.providers.anthropic import AnthropicClient, AsyncAnthropicClient
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

ProviderName = Literal["openai", "azure", "anthropic"]
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
    #: Configuration to use instead of reading the environment (also gives HTTP settings,
    #: and ``data_dir``, where Anthropic input files are kept).
    settings: Settings | None
    #: A running batchyard server: calls go to ``<server_url>/<provider>/v1`` (the key is
    #: ``api_key``, else ``BATCHYARD_MASTER_KEY``).
    server_url: str | None


def provider_config(custom_llm_provider: str = "openai",
                    **options: Unpack[ClientOptions]) -> ProviderConfig:
    """The adapter config for one call: explicit options first, then Settings (env)."""
    settings = options.get("settings") or Settings()
    api_key, api_base = options.get("api_key"), options.get("api_base")
    ad_token = options.get("azure_ad_token")
    server = options.get("server_url")
    if server:
        return _server_config(server, custom_llm_provider,
                              _secret(api_key) or settings.master_key)
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
    elif custom_llm_provider == "anthropic":
        kind, ad_token = "anthropic", None
        key = _secret(api_key) or settings.anthropic_api_key
        base, env = api_base or settings.anthropic_api_base, "ANTHROPIC_API_KEY"
        version = options.get("api_version")
    else:
        raise _unknown_provider(custom_llm_provider)
    if key is None and not ad_token:
        raise ConfigError(f"no API key for {custom_llm_provider}: pass api_key= or set {env}")
    return ProviderConfig(kind=kind, api_key=key, api_base=base,
                          api_version=version, azure_ad_token=_secret(ad_token))


def _unknown_provider(name: str) -> InvalidInputError:
    return InvalidInputError(f"custom_llm_provider must be 'openai', 'azure' or 'anthropic', "
                             f"not {name!r}", param="custom_llm_provider")


def _server_config(server: str, provider: str, key: SecretStr | None) -> ProviderConfig:
    """A batchyard server's OpenAI-compatible routes, under the prefix forcing ``provider``
    (no key: the server's keyless local mode)."""
    if provider not in ("openai", "azure", "anthropic"):
        raise _unknown_provider(provider)
    root = server.strip().rstrip("/").removesuffix("/v1")
    return ProviderConfig(kind="openai", api_key=key, api_base=f"{root}/{provider}/v1")


def _direct_anthropic(provider: str, options: ClientOptions) -> bool:
    """Whether the call goes to Anthropic itself (Message Batches, no Files API)."""
    return provider == "anthropic" and not options.get("server_url")


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


def _store(options: ClientOptions) -> sdk_anthropic.LocalStore:
    settings = options.get("settings") or Settings()
    return sdk_anthropic.LocalStore(settings.data_dir / "sdk" / "anthropic")


def _max_tokens(options: ClientOptions) -> int:
    return (options.get("settings") or Settings()).pipeline.anthropic_default_max_tokens


def _anthropic_http(options: ClientOptions, *, once: bool) -> HttpSettings:
    http = _http(options)
    # A create has no idempotency key: a repeat after a lost answer would run (and bill) twice;
    # sdk_anthropic.create repeats it only after an answer that proves it was refused.
    return http.model_copy(update={"max_attempts": 1}) if once else http


@contextmanager
def _anthropic(options: ClientOptions, *, once: bool = False) -> Iterator[AnthropicClient]:
    config = provider_config("anthropic", **options)
    with build_anthropic_provider(config, _anthropic_http(options, once=once)) as client:
        yield client


@asynccontextmanager
async def _aanthropic(options: ClientOptions, *,
                      once: bool = False) -> AsyncIterator[AsyncAnthropicClient]:
    config = provider_config("anthropic", **options)
    async with build_async_anthropic_provider(config,
                                              _anthropic_http(options, once=once)) as client:
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
    """Upload a file (streamed from disk or the open file) to the provider.

    Anthropic has no Files API: the lines are checked (a bad one raises a JsonlError with its
    line number) and the file is kept on this machine for ``create_batch``."""
    source, filename = _upload_source(file)
    if _direct_anthropic(custom_llm_provider, options):
        return _store(options).save_file(source, filename, purpose, _max_tokens(options))
    with _sync(custom_llm_provider, options) as provider:
        return file_object(provider.upload_file(source, filename=filename, purpose=purpose))


async def acreate_file(file: FileInput, purpose: str = "batch",
                       custom_llm_provider: ProviderName = "openai",
                       **options: Unpack[ClientOptions]) -> FileObject:
    """Upload a file (streamed) to the provider, asynchronously."""
    source, filename = _upload_source(file)
    if _direct_anthropic(custom_llm_provider, options):
        import anyio.to_thread

        store, tokens = _store(options), _max_tokens(options)
        return await anyio.to_thread.run_sync(
            lambda: store.save_file(source, filename, purpose, tokens))
    async with _async(custom_llm_provider, options) as provider:
        record = await provider.upload_file(source, filename=filename, purpose=purpose)
    return file_object(record)


def file_retrieve(file_id: str, custom_llm_provider: ProviderName = "openai",
                  **options: Unpack[ClientOptions]) -> FileObject:
    """Fetch a file object."""
    if _direct_anthropic(custom_llm_provider, options):
        return _store(options).file(file_id)
    with _sync(custom_llm_provider, options) as provider:
        return file_object(provider.retrieve_file(file_id))


async def afile_retrieve(file_id: str, custom_llm_provider: ProviderName = "openai",
                         **options: Unpack[ClientOptions]) -> FileObject:
    """Fetch a file object, asynchronously."""
    if _direct_anthropic(custom_llm_provider, options):
        return _store(options).file(file_id)
    async with _async(custom_llm_provider, options) as provider:
        return file_object(await provider.retrieve_file(file_id))


def file_list(custom_llm_provider: ProviderName = "openai", purpose: str | None = None,
              limit: int | None = None, after: str | None = None,
              **options: Unpack[ClientOptions]) -> FileList:
    """List files: one page when ``limit`` or ``after`` is given, else every page."""
    if _direct_anthropic(custom_llm_provider, options):
        return sdk_anthropic.file_list(_store(options), purpose, limit, after)
    with _sync(custom_llm_provider, options) as provider:
        if limit is None and after is None:
            return FileList(data=[file_object(f) for f in provider.list_files(purpose=purpose)])
        return file_page(provider.list_files_page(purpose=purpose, limit=limit,
                                                       after=after))


async def afile_list(custom_llm_provider: ProviderName = "openai", purpose: str | None = None,
                     limit: int | None = None, after: str | None = None,
                     **options: Unpack[ClientOptions]) -> FileList:
    """List files asynchronously: one page when ``limit`` or ``after`` is given, else all."""
    if _direct_anthropic(custom_llm_provider, options):
        return sdk_anthropic.file_list(_store(options), purpose, limit, after)
    async with _async(custom_llm_provider, options) as provider:
        if limit is None and after is None:
            files = [file_object(f) async for f in provider.list_files(purpose=purpose)]
            return FileList(data=files)
        page = await provider.list_files_page(purpose=purpose, limit=limit, after=after)
    return file_page(page)


def file_delete(file_id: str, custom_llm_provider: ProviderName = "openai",
                **options: Unpack[ClientOptions]) -> FileDeleted:
    """Delete a file."""
    if _direct_anthropic(custom_llm_provider, options):
        return FileDeleted(id=file_id, deleted=_store(options).delete_file(file_id))
    with _sync(custom_llm_provider, options) as provider:
        return FileDeleted(id=file_id, deleted=provider.delete_file(file_id))


async def afile_delete(file_id: str, custom_llm_provider: ProviderName = "openai",
                       **options: Unpack[ClientOptions]) -> FileDeleted:
    """Delete a file, asynchronously."""
    if _direct_anthropic(custom_llm_provider, options):
        return FileDeleted(id=file_id, deleted=_store(options).delete_file(file_id))
    async with _async(custom_llm_provider, options) as provider:
        return FileDeleted(id=file_id, deleted=await provider.delete_file(file_id))


def file_content(file_id: str, custom_llm_provider: ProviderName = "openai",
                 **options: Unpack[ClientOptions]) -> FileContent:
    """A file's bytes (input, output or error file).

    Anthropic: an ``output_file_id`` / ``error_file_id`` gives the batch's results as OpenAI
    output lines; a kept input file its bytes as uploaded."""
    if _direct_anthropic(custom_llm_provider, options):
        store = _store(options)
        if sdk_anthropic.results_target(file_id) is None:
            return FileContent(file_id=file_id, content=store.content(file_id))
        with _anthropic(options) as client:
            return FileContent(file_id=file_id,
                               content=sdk_anthropic.results(client, store, file_id))
    buffer = io.BytesIO()
    with _sync(custom_llm_provider, options) as provider:
        provider.download_file(file_id, buffer)
    return FileContent(file_id=file_id, content=buffer.getvalue())


async def afile_content(file_id: str, custom_llm_provider: ProviderName = "openai",
                        **options: Unpack[ClientOptions]) -> FileContent:
    """A file's bytes, asynchronously."""
    if _direct_anthropic(custom_llm_provider, options):
        store = _store(options)
        if sdk_anthropic.results_target(file_id) is None:
            return FileContent(file_id=file_id, content=store.content(file_id))
        async with _aanthropic(options) as client:
            content = await sdk_anthropic.aresults(client, store, file_id)
        return FileContent(file_id=file_id, content=content)
    buffer = io.BytesIO()
    async with _async(custom_llm_provider, options) as provider:
        await provider.download_file(file_id, buffer)
    return FileContent(file_id=file_id, content=buffer.getvalue())


# -- batches --------------------------------------------------------------------------------
#: Inline requests for Anthropic: native ``{"custom_id", "params"}`` or OpenAI batch lines.
Requests = Iterable[Mapping[str, Any]]


def create_batch(completion_window: str = "24h", endpoint: str = "/v1/chat/completions",
                 input_file_id: str | None = None,
                 custom_llm_provider: ProviderName = "openai",
                 metadata: dict[str, str] | None = None,
                 requests: Requests | None = None,
                 **options: Unpack[ClientOptions]) -> Batch:
    """Create a batch at the provider from an uploaded file.

    Anthropic: from a file kept by ``create_file``, or from ``requests`` given inline; the
    ``endpoint`` decides the result bodies (``chat.completion`` or Anthropic messages)."""
    if _direct_anthropic(custom_llm_provider, options):
        canonical = sdk_anthropic.check_create(endpoint, completion_window)
        with _anthropic(options, once=True) as client:
            return sdk_anthropic.create(
                client, _store(options), _http(options), endpoint=canonical,
                input_file_id=input_file_id, requests=requests, metadata=metadata,
                default_max_tokens=_max_tokens(options))
    file_id = _required_file(input_file_id, requests)
    with _sync(custom_llm_provider, options) as provider:
        return batch_object(provider.create_batch(
            input_file_id=file_id, endpoint=endpoint, completion_window=completion_window,
            metadata=metadata))


async def acreate_batch(completion_window: str = "24h", endpoint: str = "/v1/chat/completions",
                        input_file_id: str | None = None,
                        custom_llm_provider: ProviderName = "openai",
                        metadata: dict[str, str] | None = None,
                        requests: Requests | None = None,
                        **options: Unpack[ClientOptions]) -> Batch:
    """Create a batch at the provider, asynchronously."""
    if _direct_anthropic(custom_llm_provider, options):
        canonical = sdk_anthropic.check_create(endpoint, completion_window)
        async with _aanthropic(options, once=True) as client:
            return await sdk_anthropic.acreate(
                client, _store(options), _http(options), endpoint=canonical,
                input_file_id=input_file_id, requests=requests, metadata=metadata,
                default_max_tokens=_max_tokens(options))
    file_id = _required_file(input_file_id, requests)
    async with _async(custom_llm_provider, options) as provider:
        record = await provider.create_batch(
            input_file_id=file_id, endpoint=endpoint, completion_window=completion_window,
            metadata=metadata)
    return batch_object(record)


def _required_file(input_file_id: str | None, requests: Requests | None) -> str:
    if requests is not None:
        raise InvalidInputError("requests= is for custom_llm_provider='anthropic' without a "
                                "server; upload a file and pass input_file_id",
                                param="requests")
    if not input_file_id:
        raise InvalidInputError("input_file_id is required", param="input_file_id")
    return input_file_id


def retrieve_batch(batch_id: str, custom_llm_provider: ProviderName = "openai",
                   **options: Unpack[ClientOptions]) -> Batch:
    """Fetch a batch."""
    if _direct_anthropic(custom_llm_provider, options):
        with _anthropic(options) as client:
            record = client.retrieve_batch(batch_id)
        return sdk_anthropic.openai_batch(record, _store(options).batch_note(record.id))
    with _sync(custom_llm_provider, options) as provider:
        return batch_object(provider.retrieve_batch(batch_id))


async def aretrieve_batch(batch_id: str, custom_llm_provider: ProviderName = "openai",
                          **options: Unpack[ClientOptions]) -> Batch:
    """Fetch a batch, asynchronously."""
    if _direct_anthropic(custom_llm_provider, options):
        async with _aanthropic(options) as client:
            record = await client.retrieve_batch(batch_id)
        return sdk_anthropic.openai_batch(record, _store(options).batch_note(record.id))
    async with _async(custom_llm_provider, options) as provider:
        return batch_object(await provider.retrieve_batch(batch_id))


def list_batches(after: str | None = None, limit: int | None = None,
                 custom_llm_provider: ProviderName = "openai",
                 **options: Unpack[ClientOptions]) -> BatchList:
    """One page of batches (``has_more`` and ``after`` for the next)."""
    if _direct_anthropic(custom_llm_provider, options):
        with _anthropic(options) as client:
            page = client.list_batches_page(limit=limit, after=after)
        return sdk_anthropic.openai_page(page, _store(options))
    with _sync(custom_llm_provider, options) as provider:
        return batch_page(provider.list_batches_page(limit=limit, after=after))


async def alist_batches(after: str | None = None, limit: int | None = None,
                        custom_llm_provider: ProviderName = "openai",
                        **options: Unpack[ClientOptions]) -> BatchList:
    """One page of batches, asynchronously."""
    if _direct_anthropic(custom_llm_provider, options):
        async with _aanthropic(options) as client:
            page = await client.list_batches_page(limit=limit, after=after)
        return sdk_anthropic.openai_page(page, _store(options))
    async with _async(custom_llm_provider, options) as provider:
        return batch_page(await provider.list_batches_page(limit=limit, after=after))


def cancel_batch(batch_id: str, custom_llm_provider: ProviderName = "openai",
                 **options: Unpack[ClientOptions]) -> Batch:
    """Ask the provider to cancel a batch."""
    if _direct_anthropic(custom_llm_provider, options):
        with _anthropic(options) as client:
            record = client.cancel_batch(batch_id)
        return sdk_anthropic.openai_batch(record, _store(options).batch_note(record.id))
    with _sync(custom_llm_provider, options) as provider:
        return batch_object(provider.cancel_batch(batch_id))


async def acancel_batch(batch_id: str, custom_llm_provider: ProviderName = "openai",
                        **options: Unpack[ClientOptions]) -> Batch:
    """Ask the provider to cancel a batch, asynchronously."""
    if _direct_anthropic(custom_llm_provider, options):
        async with _aanthropic(options) as client:
            record = await client.cancel_batch(batch_id)
        return sdk_anthropic.openai_batch(record, _store(options).batch_note(record.id))
    async with _async(custom_llm_provider, options) as provider:
        return batch_object(await provider.cancel_batch(batch_id))
