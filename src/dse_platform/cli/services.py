"""`dse up/down/status/logs/doctor/jars/airflow/demo`: operating the local services."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import typer
from rich.table import Table

from dse_platform import credentials
from dse_platform.cli.console import console, echo
from dse_platform.config import get_settings
from dse_platform.errors import PlatformError
from dse_platform.runtime import airflow_env, jars, prereqs, services, supervisor

app = typer.Typer()


@app.command()
def doctor() -> None:
    """Check the machine's prerequisites (Java 17+, Maven, PostgreSQL when configured)."""
    settings = get_settings()
    java = prereqs.check_java(settings)
    echo(f"java: {java} (Java {prereqs.java_major_version(java)})")
    echo(f"maven: {prereqs.check_maven(settings)}")
    if settings.local_postgres:
        from dse_platform.runtime import pgserver

        echo(f"postgresql: {pgserver.bin_dir(settings)}")
    echo(f"python: {sys.executable} ({sys.version.split()[0]})")


@app.command("jars")
def jars_cmd() -> None:
    """Resolve the Kafka broker and Spark connector jars from Maven Central (skipped when present)."""
    for name, path in jars.ensure_jars(get_settings(), echo).items():
        echo(f"jars: {name} ready in {path}")


@app.command()
def up(
    airflow: bool = typer.Option(True, help="Also start Airflow (standalone)."),
    timeout: float | None = typer.Option(None, help="Seconds to wait for health (default DSE_HEALTH_TIMEOUT_S)."),
    kafka_brokers: int | None = typer.Option(
        None, min=1, max=9, help="Local Kafka brokers, one KRaft quorum (default DSE_KAFKA_BROKERS)."),
    spark_workers: int | None = typer.Option(
        None, min=0, help="Workers of a local Spark standalone cluster for the stream (default DSE_SPARK_WORKERS)."),
) -> None:
    """Start the local services and wait until each one is really healthy."""
    scale = {name: value for name, value in (("kafka_brokers", kafka_brokers), ("spark_workers", spark_workers))
             if value is not None}
    # supervisord and every program it launches (the brokers, Airflow's tasks, the stream) read their settings
    # from the environment: the flags go there, so they agree with this process
    os.environ.update({f"DSE_{name.upper()}": str(value) for name, value in scale.items()})
    settings = get_settings().model_copy(update={
        "airflow_enabled": get_settings().airflow_enabled and airflow, **scale,
        **({"health_timeout_s": timeout} if timeout is not None else {})})
    supervisor.up(settings, echo)
    _print_status(settings)


@app.command()
def down() -> None:
    """Stop every local service and the background streaming job; nothing under var/ is deleted."""
    supervisor.down(get_settings(), echo)


HEALTH_COLOURS = {"healthy": "green", "off": "yellow", "unhealthy": "red"}


def _print_status(settings) -> bool:
    """The services table; True when nothing is unhealthy (a stream that is not started is fine)."""
    table = Table(title="DSE platform services")
    for col in ("service", "process", "health", "url", "detail"):
        table.add_column(col)
    rows = supervisor.status(settings)
    for row in rows:
        colour = HEALTH_COLOURS[row["health"]]
        table.add_row(row["service"], row["process"], f"[{colour}]{row['health']}[/{colour}]", row["url"],
                      row["detail"])
    console.print(table)
    if settings.airflow_enabled and airflow_env.admin_password(settings):
        echo(f"Airflow login: admin, its generated password in {airflow_env.password_file(settings)}")
    if settings.local_mlflow and settings.mlflow_auth and credentials.mlflow_file(settings.home).exists():
        echo(f"MLflow login: {credentials.MLFLOW_ADMIN}, its generated password in "
             f"{credentials.mlflow_file(settings.home)}")
    return all(r["health"] != "unhealthy" for r in rows)


@app.command()
def status() -> None:
    """Show each service as healthy or not, with its URL (exit 1 when any is unhealthy)."""
    if not _print_status(get_settings()):
        raise typer.Exit(1)


@app.command()
def logs(
    service: str = typer.Argument(..., help="a service `dse status` lists (kafka, mlflow, ...) or supervisord"),
    lines: int = typer.Option(50, "-n", help="How many last lines to show."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
) -> None:
    """Print the last lines of one service's log."""
    settings = get_settings()
    known = [*services.service_names(settings), "supervisord"]
    if service not in known:
        raise PlatformError(f"unknown service '{service}'", f"use one of {', '.join(known)}")
    path = supervisor.log_path(settings, service)
    if not path.exists():
        raise PlatformError(f"{path} does not exist yet", "start the services with `dse up`")
    echo(supervisor.log_tail(settings, service, lines))
    if follow:
        with path.open(errors="replace") as handle:
            handle.seek(0, os.SEEK_END)
            while True:
                line = handle.readline()
                if line:
                    sys.stdout.write(line)
                else:
                    time.sleep(0.5)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def airflow(ctx: typer.Context) -> None:
    """Run an ``airflow`` CLI command in this project's Airflow environment (e.g. ``dse airflow dags list``)."""
    settings = get_settings()
    env = {**os.environ, **airflow_env.airflow_environment(settings)}
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    raise typer.Exit(subprocess.call([str(airflow_env.venv_bin() / "airflow"), *ctx.args], env=env))


@app.command()
def dashboard() -> None:
    """Serve the dashboard in the foreground, as `dse up` starts it (the compose `dashboard` service runs this)."""
    from dse_platform.dashboard import server

    argv = server.command(get_settings())
    os.execv(argv[0], argv)


@app.command()
def demo(watch: float = typer.Option(90.0, help="Seconds to show predictions as they land.")) -> None:
    """Bring everything up, train a first model if needed, stream a year of replayed bars, show predictions."""
    from dse_platform.runtime import demo as demo_mod

    demo_mod.run(get_settings(), echo, lambda frame: console.print(frame.to_string(index=False)), watch)
