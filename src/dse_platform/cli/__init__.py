"""The ``dse`` command: one entry point for operating the platform, one Typer sub-app per stage.

Faults the user can fix arrive as :class:`PlatformError` and are printed as
one line (``error: ... (fix: ...)``) with exit status 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from dse_platform.cli import data, deploy, model, services, stream
from dse_platform.cli.console import err_console
from dse_platform.errors import PlatformError

app = typer.Typer(help="DSE real-time MLOps platform.", no_args_is_help=True, add_completion=False)
for sub in (services, data, model, stream, deploy):
    app.add_typer(sub.app)


def main() -> None:
    """Console entry point: turn PlatformError into one clear line and exit 2."""
    try:
        app()
    except PlatformError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(2)
