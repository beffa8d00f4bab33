"""`dse stream`: the streaming job."""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from dse_platform.config import get_settings

app = typer.Typer()


@app.command()
def stream(
    trigger: str = typer.Option(None, help="processing-time (service) or available-now (bounded run)."),
    timeout: float = typer.Option(None, help="Stop after this many seconds."),
) -> None:
    """Run the streaming job with spark-submit (Kafka -> features -> production model -> PostgreSQL)."""
    from dse_platform.runtime import spark

    settings = get_settings()
    args = [*(["--trigger", trigger] if trigger else []), *(["--timeout", str(timeout)] if timeout else [])]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    code = subprocess.call(spark.submit_command(settings, *args), env=env, cwd=settings.project_dir)
    if code:
        raise typer.Exit(code)
