"""The one exception type users see: what went wrong, and how to fix it."""

from __future__ import annotations


class PlatformError(Exception):
    """A fault the user can act on; the CLI prints it as one line, never a traceback."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}" + (f" (fix: {fix})" if fix else ""))
