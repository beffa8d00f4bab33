"""What every ``dse`` command shares: the consoles and the parsing of common arguments."""

from __future__ import annotations

import datetime as dt
import sys

from rich.console import Console

from dse_platform.errors import PlatformError

console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)


def echo(message: str) -> None:
    """One line of output, printed as is (no rich highlighting)."""
    console.print(message, highlight=False)


def parse_date(value: str | None, flag: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise PlatformError(f"{flag} '{value}' is not a date", "use YYYY-MM-DD") from exc


def parse_speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise PlatformError(f"--speed '{value}' is not a number", "use trading days per second or 'max'") from exc


def parse_symbols(value: str | None) -> list[str] | None:
    return [s.strip().upper() for s in value.split(",") if s.strip()] if value else None
