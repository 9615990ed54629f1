"""``batchyard emulator``: the local OpenAI / Azure OpenAI provider, its flags derived from
:class:`~batchyard.emulator.config.EmulatorConfig` (a new knob there is a new flag here).

Loaded only when the command is used (the emulator imports its web server), see
:class:`batchyard.cli.group.LazyCommand`.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

import typer

from batchyard.cli.group import LAZY_COMMANDS
from batchyard.emulator.config import MB, EmulatorConfig

#: Older, shorter names kept as aliases (scripts and docs use them).
ALIASES = {
    "api_keys": ("--api-key",), "known_models": ("--known-model",),
    "enqueued_token_quota": ("--token-quota",), "azure_fail_fast_quota": ("--fail-fast-quota",),
    "request_failure_rate": ("--failure-rate",), "request_failure_status": ("--failure-status",),
}
HELP = LAZY_COMMANDS["emulator"][1]


def _option(name: str, annotation: Any, default: Any, help_text: str | None
            ) -> inspect.Parameter:
    if typing.get_origin(annotation) is tuple:  # tuple[str, ...]: a repeatable option
        annotation, default = list[str], list(default)
    elif typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        help_text = f"{help_text or ''} One of: {', '.join(choices)}.".strip()
        annotation = str
    elif isinstance(annotation, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        annotation = annotation | None
    names = (f"--{name.replace('_', '-')}", *ALIASES.get(name, ()))
    option = typer.Option(default, *names, help=help_text, show_default=default not in
                          (None, [], ()))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=annotation)


def _parameters() -> list[inspect.Parameter]:
    params = [
        inspect.Parameter("host", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                          default=typer.Option("127.0.0.1", help="Address to bind.")),
        inspect.Parameter("port", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                          default=typer.Option(8900, help="Port to listen on.")),
        inspect.Parameter("max_file_mb", inspect.Parameter.KEYWORD_ONLY, annotation=int | None,
                          default=typer.Option(None, help="Largest accepted upload, in MB "
                                                          "(sets --max-file-bytes).",
                                               show_default=False)),
    ]
    for name, field in EmulatorConfig.model_fields.items():
        params.append(_option(name, field.annotation, field.default, field.description))
    return params


def emulator(**values: Any) -> None:
    from batchyard.emulator.server import serve

    mb = values.pop("max_file_mb")
    if mb is not None:
        values["max_file_bytes"] = mb * MB
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    serve(**values)


emulator.__doc__ = HELP
emulator.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
emulator.__annotations__ = {p.name: p.annotation for p in _parameters()}


def command() -> Any:
    """The click command (built on first use)."""
    app = typer.Typer(add_completion=False)
    app.command(name="emulator", help=HELP)(emulator)
    return typer.main.get_command(app)
