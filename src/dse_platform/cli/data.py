"""`dse ingest/topics/replay/live/eod`: data into the store and onto Kafka."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from dse_platform.cli.console import console, echo, parse_date, parse_speed, parse_symbols
from dse_platform.config import get_settings
from dse_platform.data import ingest as ingest_mod
from dse_platform.data.formats import ColumnMap
from dse_platform.data.quality import REJECT_RULES
from dse_platform.data.raw_file import parse_price_basis
from dse_platform.data.trading_calendar import today_dhaka
from dse_platform.streams import kafka_io
from dse_platform.streams import replay as replay_mod

app = typer.Typer()


def _print_quality(report: dict) -> None:
    table = Table(title=f"Data quality: {report['read']:,} rows read from {report['files']} files")
    for col in ("rule", "action", "rows"):
        table.add_column(col)
    for rule, count in report["by_rule"].items():
        action = "rejected" if rule in REJECT_RULES else "kept, flagged"
        table.add_row(rule, action, f"{count:,}")
    console.print(table)
    echo(f"kept {report['kept']:,} ({report['clean']:,} clean + {report['flagged']:,} flagged), "
          f"rejected {report['rejected']:,}; {report['symbols']} instruments, "
          f"{report['first_date']} .. {report['last_date']}, {report['sessions']:,} sessions")
    worst = sorted(report["by_symbol"].items(), key=lambda kv: -sum(kv[1].values()))[:10]
    if worst:
        echo("instruments with the most flagged/rejected rows (all in quality_by_symbol.csv): " + "; ".join(
            f"{sym} " + ", ".join(f"{rule} {n}" for rule, n in sorted(rules.items())) for sym, rules in worst))
    for name, cols in report["junk_columns"].items():
        echo(f"{name}: dropped empty columns {', '.join(cols)}")
    echo("instruments by price basis: " + (", ".join(f"{basis} {n:,}" for basis, n in report["price_basis"].items())
                                           or "none kept"))
    if report["kept_from_store"]:
        echo("kept as the store held them (their new rows were refused for their price basis): " + ", ".join(
            f"{symbol} {n:,} rows" for symbol, n in report["kept_from_store"].items()))


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(None, help="Files or folders to read (default: the shipped data/)."),
    store_dir: Path = typer.Option(None, "--store", help="Store folder (default DSE_STORE_DIR or var/store)."),
    strict: bool = typer.Option(False, "--strict",
                                help="Stop at the first refusal (unreadable file or price basis); store untouched."),
    columns: str = typer.Option(None, "--columns", help="Column map: symbol=Ticker,date=Day,..."),
    price_basis: str = typer.Option(
        None, "--price-basis", help="raw (DSE's traded prices, the default) or adjusted (back-adjusted for "
        "bonus/rights issues and splits) for files whose header does not say it (an Adj Close column is adjusted)."),
) -> None:
    """Validate raw DSE files into the canonical Parquet bar store and print the quality report.

    A file that cannot be read, or an instrument whose price basis clashes (raw and adjusted in one run, or
    not the basis the store holds), is refused and listed, the rest stored; the exit status is 1 then.
    """
    settings = get_settings()
    target = store_dir or settings.store_dir
    column_map = ColumnMap.parse(columns) if columns else None
    basis = parse_price_basis(price_basis) if price_basis else None
    result = ingest_mod.ingest(paths or [settings.data_dir], target, progress=sys.stderr.isatty(),
                               reference_file=settings.reference_file, strict=strict, columns=column_map,
                               price_basis=basis)
    _print_quality(result.report)
    echo(f"store written to {target} (report: {target / 'quality_report.json'}, "
          f"rejects: {target / 'rejects.csv'})")
    refused = result.report["refused"]
    for item in refused:
        echo(f"refused {item['file']}: {item['reason']}")
    if refused:
        files = sum("symbol" not in item for item in refused)
        instruments = len({item["symbol"] for item in refused if "symbol" in item})
        echo(f"{files} file(s) and {instruments} instrument(s) (for their price basis) refused and not stored; "
             "fix them and run again, or pass --strict to stop at the first")
        raise typer.Exit(1)


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
    result = replay_mod.replay(settings, parse_date(start, "--from"), parse_date(end, "--to"),
                               parse_symbols(symbols), parse_speed(speed), resume, progress=sys.stderr.isatty(),
                               echo=echo)
    echo(f"replay: {result.bars:,} bars over {result.days:,} trading days to {settings.bars_topic} "
          f"in {result.seconds:.1f}s ({result.bars_per_s:,.0f} bars/s)")


@app.command()
def topics() -> None:
    """Create the platform's Kafka topics if missing."""
    settings = get_settings()
    created = kafka_io.ensure_topics(settings)
    echo(f"topics: created {', '.join(created) or 'none'}; all of {', '.join(kafka_io.all_topics(settings))} exist")


@app.command()
def live(max_polls: int = typer.Option(None, help="Stop after this many polls (default: run forever).")) -> None:
    """Poll DSE's latest-share-price page during market hours and publish changed snapshots."""
    from dse_platform.streams import live

    live.run(get_settings(), max_polls=max_polls)


@app.command()
def eod(
    day: str = typer.Option(None, "--date", help="Trading date (YYYY-MM-DD; default: today in Asia/Dhaka)."),
) -> None:
    """Publish a session's official end-of-day bars from DSE's day-end archive to the bars topic."""
    from dse_platform.streams import end_of_day

    result = end_of_day.publish_day(get_settings(), parse_date(day, "--date") or today_dhaka())
    echo(result.summary())
