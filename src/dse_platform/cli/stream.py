"""`dse stream`: the streaming job, in the foreground or as the supervised background service."""

from __future__ import annotations

import os
import subprocess

import typer

from dse_platform.cli.console import echo
from dse_platform.config import get_settings
from dse_platform.errors import PlatformError

app = typer.Typer()


@app.command()
def stream(
    trigger: str = typer.Option(None, help="processing-time (service) or available-now (bounded run)."),
    timeout: float = typer.Option(None, help="Stop after this many seconds."),
    background: bool = typer.Option(False, "--background", help="Run it under supervisor (restarted on crashes; "
                                                                "`dse status` shows it, `dse down` stops it)."),
) -> None:
    """Run the streaming job with spark-submit (Kafka -> features -> production model -> PostgreSQL)."""
    from dse_platform.runtime import spark, supervisor

    settings = get_settings()
    if background:
        if trigger or timeout:
            raise PlatformError("--trigger and --timeout apply to a foreground run; the background job is a service",
                                "drop them, or run without --background")
        info = supervisor.start_program(settings, "stream")
        echo(f"stream: {info['statename']} under supervisor (log {supervisor.log_path(settings, 'stream')}, "
             f"Spark UI http://{settings.host}:{settings.spark_ui_port}); `dse down` stops it")
        return
    args = [*(["--trigger", trigger] if trigger else []), *(["--timeout", str(timeout)] if timeout else [])]
    env = {**os.environ, **spark.spark_env(settings)}
    code = subprocess.call(spark.submit_command(settings, *args), env=env, cwd=settings.project_dir)
    if code:
        raise typer.Exit(code)
