"""The click group class of every ``batchyard`` (sub-)app: one-line errors (the traceback
only with ``--debug``) and help without type labels."""

from __future__ import annotations

from typing import Any, ClassVar

import typer
from typer.core import TyperGroup

from batchyard.cli.common import EXIT_ERROR, EXIT_USAGE, CommandError


def _no_type(ctx: Any) -> None:
    return None


def _untyped(params: list[Any]) -> list[Any]:
    """Help without type labels (``<bool>``, ``<str>``, ``<file>``); choices keep their list."""
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if not getattr(descriptor, "is_choice", False):
            param.display_type_rich = _no_type
    return params


def _tidy(command: Any, ctx: Any) -> None:
    _untyped(command.get_params(ctx))  # the help option is cached: the one shown later


def _one_line(exc: BaseException) -> tuple[str, int]:
    from batchyard.errors import BatchyardError, ConfigError

    if isinstance(exc, CommandError):
        return exc.message, exc.exit_code
    if isinstance(exc, ConfigError):
        return exc.message, EXIT_USAGE
    if isinstance(exc, BatchyardError):
        return exc.message, EXIT_ERROR
    return (f"{exc.__class__.__name__}: {exc} (run with --debug for the traceback)",
            EXIT_ERROR)


class Group(TyperGroup):
    """A command group whose errors are one line (traceback with ``--debug``)."""

    def get_params(self, ctx: Any) -> Any:
        return _untyped(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _tidy(command, ctx)
        return command

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            if ctx.find_root().params.get("debug"):
                raise
            message, code = _one_line(exc)
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code) from None


def new_app(*, root: bool = False, **kwargs: Any) -> typer.Typer:
    """A Typer (sub-)app with this CLI's group class and settings."""
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(cls=RootGroup if root else Group, pretty_exceptions_enable=False,
                       **kwargs)


class RootGroup(Group):
    """The ``batchyard`` group: also the commands whose module is imported only when they are
    used (``emulator`` imports a web server; ``batchyard status`` should not)."""

    #: command name -> module with a ``command()`` returning the click command.
    LAZY: ClassVar[dict[str, str]] = {"emulator": "batchyard.cli.emulator"}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in self.LAZY if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.LAZY and cmd_name not in self.commands:
            import importlib

            command = importlib.import_module(self.LAZY[cmd_name]).command()
            _tidy(command, ctx)
            return command
        return super().get_command(ctx, cmd_name)
