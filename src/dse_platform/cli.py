"""The ``dse`` command: one entry point for operating the platform.

Faults the user can fix arrive as :class:`PlatformError` and are printed as
one line (``error: ... (fix: ...)``) with exit status 2, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dse_platform import airflow_env, jars, kafka_io, prereqs, services
from dse_platform import ingest as ingest_mod
from dse_platform import replay as replay_mod
from dse_platform.config import get_settings
from dse_platform.errors import PlatformError
from dse_platform.quality import REJECT_RULES

app = typer.Typer(help="DSE real-time MLOps platform.", no_args_is_help=True, add_completion=False)
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)


def _echo(message: str) -> None:
    console.print(message, highlight=False)


@app.command()
def doctor() -> None:
    """Check the machine's prerequisites (Java 17+, Maven, PostgreSQL when configured)."""
    settings = get_settings()
    java = prereqs.check_java(settings)
    _echo(f"java: {java} (Java {prereqs.java_major_version(java)})")
    _echo(f"maven: {prereqs.check_maven(settings)}")
    if settings.local_postgres:
        from dse_platform import pgserver

        _echo(f"postgresql: {pgserver.bin_dir(settings)}")
    _echo(f"python: {sys.executable} ({sys.version.split()[0]})")


@app.command("jars")
def jars_cmd() -> None:
    """Resolve the Kafka broker and Spark connector jars from Maven Central (skipped when present)."""
    for name, path in jars.ensure_jars(get_settings(), _echo).items():
        _echo(f"jars: {name} ready in {path}")


@app.command()
def up(
    airflow: bool = typer.Option(True, help="Also start Airflow (standalone)."),
    timeout: float | None = typer.Option(None, help="Seconds to wait for health (default DSE_HEALTH_TIMEOUT_S)."),
) -> None:
    """Start the local services and wait until each one is really healthy."""
    settings = get_settings()
    if not airflow:
        settings.airflow_enabled = False
    if timeout is not None:
        settings.health_timeout_s = timeout
    services.up(settings, _echo)
    _print_status(settings)


@app.command()
def down() -> None:
    """Stop the background streaming job and every local service; nothing under var/ is deleted."""
    from dse_platform import demo as demo_mod

    demo_mod.stop_stream(get_settings(), _echo)
    services.down(get_settings(), _echo)


def _print_status(settings) -> bool:
    table = Table(title="DSE platform services")
    for col in ("service", "process", "health", "url", "detail"):
        table.add_column(col)
    rows = services.status(settings)
    for row in rows:
        colour = "green" if row["health"] == "healthy" else "red"
        table.add_row(row["service"], row["process"], f"[{colour}]{row['health']}[/{colour}]", row["url"],
                      row["detail"])
    console.print(table)
    if settings.airflow_enabled:
        password = airflow_env.admin_password(settings)
        if password:
            _echo(f"Airflow login: admin / {password}")
    return all(r["health"] == "healthy" for r in rows)


@app.command()
def status() -> None:
    """Show each service as healthy or not, with its URL (exit 1 when any is unhealthy)."""
    if not _print_status(get_settings()):
        raise typer.Exit(1)


@app.command()
def logs(
    service: str = typer.Argument(..., help="kafka, mlflow, airflow, postgres or supervisord"),
    lines: int = typer.Option(50, "-n", help="How many last lines to show."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
) -> None:
    """Print the last lines of one service's log."""
    settings = get_settings()
    known = [*services.service_names(settings), "supervisord"]
    if service not in known:
        raise PlatformError(f"unknown service '{service}'", f"use one of {', '.join(known)}")
    path = services.log_path(settings, service)
    if not path.exists():
        raise PlatformError(f"{path} does not exist yet", "start the services with `dse up`")
    _echo(services.log_tail(settings, service, lines))
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


def _print_quality(report: dict) -> None:
    table = Table(title=f"Data quality: {report['read']:,} rows read from {report['files']} files")
    for col in ("rule", "action", "rows"):
        table.add_column(col)
    for rule, count in report["by_rule"].items():
        action = "rejected" if rule in REJECT_RULES else "kept, flagged"
        table.add_row(rule, action, f"{count:,}")
    console.print(table)
    _echo(f"kept {report['kept']:,} ({report['clean']:,} clean + {report['flagged']:,} flagged), "
          f"rejected {report['rejected']:,}; {report['symbols']} instruments, "
          f"{report['first_date']} .. {report['last_date']}, {report['sessions']:,} sessions")
    worst = sorted(report["by_symbol"].items(), key=lambda kv: -sum(kv[1].values()))[:10]
    if worst:
        _echo("instruments with the most flagged/rejected rows (all in quality_by_symbol.csv): " + "; ".join(
            f"{sym} " + ", ".join(f"{rule} {n}" for rule, n in sorted(rules.items())) for sym, rules in worst))
    for name, cols in report["junk_columns"].items():
        _echo(f"{name}: dropped empty columns {', '.join(cols)}")


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(None, help="Files or folders to read (default: the shipped data/)."),
    store_dir: Path = typer.Option(None, "--store", help="Store folder (default DSE_STORE_DIR or var/store)."),
) -> None:
    """Validate raw DSE files into the canonical Parquet bar store and print the quality report."""
    settings = get_settings()
    target = store_dir or settings.store_dir
    result = ingest_mod.ingest(paths or [settings.data_dir], target, progress=sys.stderr.isatty())
    _print_quality(result.report)
    _echo(f"store written to {target} (report: {target / 'quality_report.json'}, "
          f"rejects: {target / 'rejects.csv'})")


def _date(value: str | None, flag: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise PlatformError(f"{flag} '{value}' is not a date", "use YYYY-MM-DD") from exc


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise PlatformError(f"--speed '{value}' is not a number", "use trading days per second or 'max'") from exc


@app.command("replay")
def replay_cmd(
    start: str = typer.Option(None, "--from", help="First trading date (YYYY-MM-DD)."),
    end: str = typer.Option(None, "--to", help="Last trading date (YYYY-MM-DD)."),
    symbols: str = typer.Option(None, help="Comma-separated trading codes (default: all)."),
    speed: str = typer.Option("max", help="Trading days per second, or 'max'."),
    resume: bool = typer.Option(False, help="Continue after the last acknowledged day of the same replay."),
) -> None:
    """Replay stored bars into the bars topic, day by day."""
    settings = get_settings()
    result = replay_mod.replay(settings, _date(start, "--from"), _date(end, "--to"), _symbols(symbols), _speed(speed),
                               resume, progress=sys.stderr.isatty(), echo=_echo)
    _echo(f"replay: {result.bars:,} bars over {result.days:,} trading days to {settings.bars_topic} "
          f"in {result.seconds:.1f}s ({result.bars_per_s:,.0f} bars/s)")


@app.command()
def topics() -> None:
    """Create the platform's Kafka topics if missing."""
    settings = get_settings()
    created = kafka_io.ensure_topics(settings)
    _echo(f"topics: created {', '.join(created) or 'none'}; all of {', '.join(kafka_io.all_topics(settings))} exist")


@app.command()
def live(max_polls: int = typer.Option(None, help="Stop after this many polls (default: run forever).")) -> None:
    """Poll DSE's latest-share-price page during market hours and publish changed snapshots."""
    from dse_platform import live as live_mod

    live_mod.run(get_settings(), max_polls=max_polls)


def _symbols(value: str | None) -> list[str] | None:
    return [s.strip().upper() for s in value.split(",") if s.strip()] if value else None


@app.command()
def train(
    start: str = typer.Option(None, "--from", help="First bar date to train on (default: all history)."),
    cutoff: str = typer.Option(None, "--cutoff", help="Last bar date the model may see (default: all)."),
    symbols: str = typer.Option(None, help="Comma-separated trading codes (default: every instrument)."),
    folds: int = typer.Option(None, help="Walk-forward folds (default DSE_TRAIN_FOLDS)."),
    test_sessions: int = typer.Option(None, help="Sessions per test window (default DSE_TRAIN_TEST_SESSIONS)."),
    promote: bool = typer.Option(False, help="Run the champion/challenger gate on the new version."),
) -> None:
    """Walk-forward evaluate and train the direction model, log it to MLflow and register a version."""
    from dse_platform import registry, training

    settings = get_settings()
    result = training.train(settings, _date(start, "--from"), _date(cutoff, "--cutoff"), _symbols(symbols),
                            folds, test_sessions)
    for line in training.summary_lines(result, settings.gate_metric):
        _echo(line)
    if promote and result.version:
        _print_decision(registry.promote(settings, result.version))


def _print_decision(decision) -> None:
    verdict = "PROMOTED" if decision.promoted else "HELD"
    _echo(f"gate: version {decision.challenger} {verdict}: {decision.reason}")


@app.command("promote")
def promote_cmd(
    version: str = typer.Option(None, help="Version to promote (default: the newest)."),
    force: bool = typer.Option(False, help="Skip the gate (recorded as a forced promotion)."),
) -> None:
    """Make a version `production` if it beats the current one and both baselines (the gate)."""
    from dse_platform import registry

    if force and version is None:
        raise PlatformError("--force needs --version", "name the version to force, e.g. --version 3")
    decision = registry.promote(get_settings(), version, force)
    _print_decision(decision)
    if not decision.promoted:
        raise typer.Exit(1)


@app.command()
def models() -> None:
    """List registered versions with their aliases and headline walk-forward metrics."""
    from dse_platform import registry

    settings = get_settings()
    frame = registry.list_models(settings)
    if frame.empty:
        _echo(f"no versions of {settings.model_name} yet: run `dse train`")
        return
    table = Table(title=f"{settings.model_name} at {settings.tracking_uri}")
    for col in frame.columns:
        table.add_column(col)
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


@app.command()
def stream(
    trigger: str = typer.Option(None, help="processing-time (service) or available-now (bounded run)."),
    timeout: float = typer.Option(None, help="Stop after this many seconds."),
) -> None:
    """Run the streaming job with spark-submit (Kafka -> features -> production model -> PostgreSQL)."""
    from dse_platform import streaming

    settings = get_settings()
    args = [*(["--trigger", trigger] if trigger else []), *(["--timeout", str(timeout)] if timeout else [])]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    code = subprocess.call(streaming.submit_command(settings, *args), env=env, cwd=settings.project_dir)
    if code:
        raise typer.Exit(code)


@app.command()
def demo(watch: float = typer.Option(90.0, help="Seconds to show predictions as they land.")) -> None:
    """Bring everything up, train a first model if needed, stream a year of replayed bars, show predictions."""
    from dse_platform import demo as demo_mod

    demo_mod.run(get_settings(), _echo, lambda frame: console.print(frame.to_string(index=False)), watch)


def main() -> None:
    """Console entry point: turn PlatformError into one clear line and exit 2."""
    try:
        app()
    except PlatformError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
