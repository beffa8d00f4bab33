"""`dse train/promote/models`: the model lifecycle."""

from __future__ import annotations

import typer
from rich.table import Table

from dse_platform.cli.console import console, echo, parse_date, parse_symbols
from dse_platform.config import get_settings
from dse_platform.errors import PlatformError

app = typer.Typer()


@app.command()
def train(
    start: str = typer.Option(None, "--from", help="First bar date to train on (default: all history)."),
    cutoff: str = typer.Option(None, "--cutoff", help="Last bar date the model may see (default: all)."),
    symbols: str = typer.Option(None, help="Comma-separated trading codes (default: every instrument)."),
    folds: int = typer.Option(None, help="Walk-forward folds (default DSE_TRAIN_FOLDS)."),
    test_sessions: int = typer.Option(None, help="Sessions per test window (default DSE_TRAIN_TEST_SESSIONS)."),
    recipe: str = typer.Option(None, help="Model recipe, logreg or hgb (default DSE_TRAIN_RECIPE)."),
    promote: bool = typer.Option(False, help="Run the champion/challenger gate on the new version."),
) -> None:
    """Walk-forward evaluate, fit the model before the holdout and score it there, log to MLflow, register it."""
    from dse_platform.model import gate, training

    settings = get_settings()
    result = training.train(settings, parse_date(start, "--from"), parse_date(cutoff, "--cutoff"),
                            parse_symbols(symbols), folds, test_sessions, recipe=recipe)
    for line in training.summary_lines(result, settings.gate_metric):
        echo(line)
    if promote and result.version:
        _print_decision(gate.promote(settings, result.version))


def _print_decision(decision, dry_run: bool = False) -> None:
    verdict = "PROMOTED" if decision.promoted else "HELD"
    echo(f"gate{' (dry run: nothing moved or recorded)' if dry_run else ''}: version {decision.challenger} "
         f"{'would be ' + verdict if dry_run else verdict}: {decision.reason}")
    if decision.policy:
        echo("  policy: " + ", ".join(f"{k}={v}" for k, v in decision.policy.items()))


@app.command("promote")
def promote_cmd(
    version: str = typer.Option(None, help="Version to promote (default: the newest)."),
    force: bool = typer.Option(False, help="Skip the gate (recorded as a forced promotion)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what the gate would do; move and record nothing."),
) -> None:
    """Make a version `production` if the gate's policy says it clearly beats the champion and the baselines."""
    from dse_platform.model import gate

    if force and version is None:
        raise PlatformError("--force needs --version", "name the version to force, e.g. --version 3")
    settings = get_settings()
    if dry_run:
        _print_decision(gate.evaluate(settings, version, force), dry_run=True)
        return
    decision = gate.promote(settings, version, force)
    _print_decision(decision)
    if not decision.promoted:
        raise typer.Exit(1)


@app.command()
def models() -> None:
    """List registered versions with their aliases and headline walk-forward metrics."""
    from dse_platform.model import registry

    settings = get_settings()
    frame = registry.list_models(settings)
    if frame.empty:
        echo(f"no versions of {settings.model_name} yet: run `dse train`")
        return
    table = Table(title=f"{settings.model_name} at {settings.tracking_uri}")
    for col in frame.columns:
        table.add_column(col)
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
