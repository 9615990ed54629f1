"""The click group class of every ``batchyard`` (sub-)app: one-line errors (the traceback
only with ``--debug``) and help without type labels."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

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


#: Commands whose module is imported only when they run: name -> (module with a
#: ``command()`` returning the click command, the one-line help that ``--help`` lists).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "emulator": ("batchyard.cli.emulator",
                 "Run the local OpenAI / Azure OpenAI Files + Batches emulator."),
}


class LazyCommand(TyperCommand):
    """Stands in for a lazy command: ``--help`` lists it by its one-line help; running it
    (or completing its options) imports its module and hands over to the real command."""

    def __init__(self, name: str, module: str, help_text: str) -> None:
        super().__init__(name, help=help_text)
        self.module = module

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        import importlib

        command = importlib.import_module(self.module).command()
        _tidy(command, parent)
        return command.make_context(info_name, args, parent=parent, **extra)


class RootGroup(Group):
    """The ``batchyard`` group: also the commands whose module is imported only when they are
    used (``emulator`` imports a web server; ``batchyard status`` and ``--help`` should not)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx),
                *(n for n in LAZY_COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, help_text = LAZY_COMMANDS[cmd_name]
            return LazyCommand(cmd_name, module, help_text)
        return super().get_command(ctx, cmd_name)
