"""What every command shares: exit codes, the error that ends a command, option types, Settings.

Kept light (typer only at import time) so ``batchyard --help`` and ``batchyard status`` start
fast; every heavy import happens inside the function that needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from batchyard.config import Settings

#: Exit codes (also in the README): a script can tell success, a batch that completed with
#: failed requests, and a batch that did not complete, apart from a command error.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # click's code for a bad command line
EXIT_COMPLETED_WITH_FAILURES = 3
EXIT_NOT_COMPLETED = 4  # the batch ended failed, expired or cancelled
EXIT_INTERRUPTED = 130

#: Keys and schedules travel as the API's JSON objects, locally and remotely.
JsonObject = dict[str, Any]


class CommandError(Exception):
    """Ends a command: its message is printed as one line on stderr, then it exits non-zero."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def fail(message: str, exit_code: int = EXIT_ERROR) -> NoReturn:
    """Stop the command with a one-line error."""
    raise CommandError(message, exit_code)


UrlOption = Annotated[str | None, typer.Option(
    "--url", envvar="BATCHYARD_URL", show_default=False,
    help="A running batchyard server (e.g. http://host:4000): talk to it over its HTTP API "
         "instead of the local data dir. [env: BATCHYARD_URL]", show_envvar=False)]
ApiKeyOption = Annotated[str | None, typer.Option(
    "--api-key", envvar="BATCHYARD_API_KEY", show_default=False,
    help="The key for --url (master key or a virtual key). [env: BATCHYARD_API_KEY]",
    show_envvar=False)]


def settings() -> Settings:
    """Settings from the environment (the only place the CLI builds them)."""
    from batchyard.config import Settings

    return Settings()


def safe_url(url: str) -> str:
    """A database / broker URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (e.g. a Redis one): drop any user info
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
