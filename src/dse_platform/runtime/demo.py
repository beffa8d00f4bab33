"""`make demo`: the whole platform on one machine, from a fresh clone to live predictions.

Services up, while the shipped history is ingested (if the store is empty) -> start the streaming job
under supervisor and, while Spark starts, train and promote a first model on history *before* the replayed year (if
none) -> once the job serves it, replay the last year of shipped bars at demo speed -> show
predictions as they land -> say where every UI
is, how to log in, how to stop, and what to try next. Every prediction the demo shows is out of
sample: the model never saw the year it scores.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, select

from dse_platform import credentials
from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.dashboard import server as dashboard
from dse_platform.data import store
from dse_platform.errors import PlatformError
from dse_platform.model import gate, registry, training
from dse_platform.runtime import airflow_env, supervisor
from dse_platform.serving import database
from dse_platform.streams import kafka_io

DEMO_SPEED = 8.0  # trading days per second: a year in about half a minute
#: how much history the demo replays (the model is trained on what comes before it)
REPLAY_DAYS = 365
#: small first micro-batches: the first predictions show in seconds instead of after one 50k-record batch
STREAM_ENVIRONMENT = {"DSE_STREAM_MAX_OFFSETS": "5000"}
#: how long the replay waits for the streaming job to load the first model (it polls the registry every
#: DSE_STREAM_MODEL_POLL_S; its own start takes ~45 s on 2 cores, mostly overlapped with the training)
MODEL_LOAD_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Window:
    """The replayed period and the training cutoff before it."""

    start: dt.date
    end: dt.date

    @property
    def cutoff(self) -> dt.date:
        return self.start - dt.timedelta(days=1)


def replay_window(settings: Settings) -> Window:
    """The last REPLAY_DAYS of the store: what the demo streams, and so what the model may not train on."""
    last = store.read_bars(settings.store_dir, columns=["symbol", "date"])["date"].max()
    return Window(last - dt.timedelta(days=REPLAY_DAYS), last)


def header_lines(settings: Settings, watch_s: float) -> list[str]:
    """What the demo will do, and about how long it takes on a 2-core machine."""
    return [
        "DSE real-time MLOps platform: demo",
        "  1. start Kafka, MLflow, Airflow (and PostgreSQL when configured) under supervisor  ~1-2 min",
        "  2. meanwhile ingest the shipped DSE history into the bar store (first run only)    ~25 s",
        "  3. start the Spark streaming job; meanwhile train a first model walk-forward on",
        "     history before the replayed year (first run only)                              ~35 s",
        "  4. replay the last year of bars into Kafka once the job serves the model",
        f"  5. show predictions as they are stored, for {watch_s:.0f} s",
        f"serving database: {database_kind(settings)}",
    ]


def database_kind(settings: Settings) -> str:
    if settings.db_url:
        return "the database at DSE_DB_URL"
    if settings.db_backend == "postgres":
        return "PostgreSQL (local server under supervisor)"
    return (f"SQLite ({settings.home / 'serving.db'}); for PostgreSQL run `dse down`, then "
            "`DSE_DB_BACKEND=postgres make demo`")


@dataclass(frozen=True)
class Progress:
    replayed: int
    bars: int
    predictions: int
    dead_letters: int

    def line(self) -> str:
        return (f"demo: {self.replayed:,} bars replayed into Kafka, {self.bars:,} processed by the stream, "
                f"{self.predictions:,} predictions stored, {self.dead_letters:,} dead letters")


def progress(settings: Settings, engine) -> Progress:
    """Where the pipeline is: records on the bars topic, and rows the stream committed (served predictions)."""
    with engine.connect() as conn:
        bars, dead = (conn.execute(select(func.count()).select_from(table)).scalar_one()
                      for table in (tables.bars, tables.dead_letters))
    return Progress(kafka_io.records_in(settings, settings.bars_topic), bars, served_predictions(engine), dead)


def mlflow_login(settings: Settings) -> str:
    """How to log in to MLflow; never the password itself (`dse up` showed a generated one once)."""
    if settings.mlflow_username is not None:
        return f"user {settings.mlflow_username} (DSE_MLFLOW_USERNAME / DSE_MLFLOW_PASSWORD)"
    if settings.local_mlflow and settings.mlflow_auth:
        return f"user {credentials.MLFLOW_ADMIN}, password in {credentials.mlflow_file(settings.home)}"
    return "no login configured (DSE_MLFLOW_USERNAME / DSE_MLFLOW_PASSWORD if the server asks for one)"


def closing_lines(settings: Settings) -> list[str]:
    """Where every UI is, how to log in, how to stop, and what to try next."""
    password = airflow_env.admin_password(settings) if settings.airflow_enabled else None
    login = (f"user admin, password {password} (also in `dse status`)" if password
             else "user admin, password shown by `dse status` once Airflow has started")
    lines = [
        "",
        "Where everything is:",
        f"  MLflow   {settings.tracking_uri}   registry: model {settings.model_name}, alias "
        f"'{settings.model_alias}'; {mlflow_login(settings)}",
    ]
    if settings.airflow_enabled:
        lines.append(f"  Airflow  {settings.airflow_url}   {login}")
    lines += [
        f"  Dashboard {dashboard.url(settings)}   market, instruments, model, pipeline (reads the serving DB "
        "read-only)",
        f"  Spark    http://{settings.host}:{settings.spark_ui_port}   the streaming job's UI",
        f"  Kafka    {settings.bootstrap_servers}   topics {settings.bars_topic}, {settings.predictions_topic}, "
        f"{settings.deadletter_topic}",
        f"  Database {database_kind(settings)}",
        "",
        "The streaming job keeps running under supervisor (`dse status`, `dse logs stream`).",
        "Stop everything with `dse down` (or `make down`); data under var/ is kept.",
        "Try next:",
        "  - trigger dse_streaming in the Airflow UI with a date range, and watch its predictions sensor",
        f"  - move the '{settings.model_alias}' alias to another version in the MLflow UI: the job follows it",
        f"  - set the '{settings.challenger_alias}' alias on another version: the job scores it in shadow beside "
        f"'{settings.model_alias}' (predictions.role = 'challenger'; nothing is published or served from it)",
        "  - `dse models` and `dse promote` to run the champion/challenger gate yourself",
    ]
    return lines


def _ingest(settings: Settings) -> str:
    """`dse ingest` of the shipped files; one line of what it kept.

    In its own process, output in ``logs/ingest.log``: its ~1.4 GB goes back to the system when it ends, not
    kept by the demo for the rest of its run. Files it refused are named in that line and the demo goes on, as
    `dse ingest` itself stores the rest; a store it could not write stops the demo with its log.
    """
    log = settings.logs_dir / "ingest.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        code = subprocess.run([_dse(), "ingest", str(settings.data_dir), "--store",
                               str(settings.store_dir)], stdout=out,
                              stderr=subprocess.STDOUT, cwd=settings.project_dir).returncode
    if not store.exists(settings.store_dir):
        raise PlatformError(f"`dse ingest` of {settings.data_dir} stored nothing (exit status {code})",
                            f"read {log}, fix what it names, then run `make demo` again")
    report = json.loads((settings.store_dir / "quality_report.json").read_text())
    return (f"demo: ingested {report['kept']:,} bars of {report['symbols']} instruments, "
            f"{report['first_date']}..{report['last_date']} ({report['flagged']:,} flagged, {report['rejected']:,} "
            f"rejected, {len(report['refused'])} files refused; the whole report in {log})")


def served_predictions(engine: Engine) -> int:
    """Production predictions stored so far."""
    query = select(func.count()).select_from(tables.predictions).where(tables.predictions.c.role == tables.PRODUCTION)
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def _first_model(settings: Settings, window: Window, echo: Callable[[str], None]) -> str:
    """Train (`dse train`), gate and promote the first model (forced when the gate holds it); returns its version.

    The training runs in a process of its own, its summary passed through line by line: the ~1 GB of the
    whole history's features it holds goes back to the system when it ends, not kept by this process for
    the rest of the demo beside the streaming job.
    """
    echo(f"demo: no production model yet; training one walk-forward on bars up to {window.cutoff}, "
         f"before the replayed year, so every prediction shown is out of sample")
    trainer = subprocess.Popen([_dse(), "train", "--cutoff", str(window.cutoff)], stdout=subprocess.PIPE, text=True,
                               cwd=settings.project_dir)
    version = None
    for line in trainer.stdout:
        echo(line.rstrip("\n"))
        version = version or training.registered_version(line)
    if trainer.wait() != 0 or version is None:
        raise PlatformError(f"`dse train --cutoff {window.cutoff}` registered no model (exit status "
                            f"{trainer.returncode})", "its output is above: fix what it names, then `make demo` again")
    decision = gate.promote(settings, version, source="dse demo")
    echo(f"demo: gate {'PROMOTED' if decision.promoted else 'HELD'} version {version}: {decision.reason}")
    if not decision.promoted:
        gate.promote(settings, version, force=True, source="dse demo (first model)")
        echo("demo: promoted it anyway as the first model so the demo can score (recorded as forced)")
    return version


def _dse() -> str:
    """The `dse` console script of this interpreter's environment."""
    return str(Path(sys.executable).parent / "dse")


def model_loaded(settings: Settings, engine: Engine, version: str) -> bool:
    """Whether the streaming job has recorded loading ``version`` of the model for production."""
    events = tables.model_events
    query = select(func.count()).select_from(events).where(
        events.c.event == "reloaded", events.c.source == "stream", events.c.model_name == settings.model_name,
        events.c.version == version)
    with engine.connect() as conn:
        return conn.execute(query).scalar_one() > 0


def await_model(settings: Settings, engine: Engine, version: str, echo: Callable[[str], None]) -> None:
    """Hold the replay until the job serves ``version``: bars it streamed before that would stay unscored."""
    deadline = time.monotonic() + MODEL_LOAD_TIMEOUT_S
    while not model_loaded(settings, engine, version):
        if time.monotonic() > deadline:
            echo(f"demo: the streaming job has not loaded version {version} after {MODEL_LOAD_TIMEOUT_S:.0f} s; "
                 f"replaying anyway (bars it reads before loading it are stored unscored): see `dse logs stream`")
            return
        time.sleep(1)
    echo(f"demo: the streaming job serves version {version}")


def run(settings: Settings, echo: Callable[[str], None], show: Callable[[object], None],
        watch_s: float = 90.0) -> None:
    """Everything `make demo` does; returns after ``watch_s`` seconds of showing predictions."""
    started = time.monotonic()
    for line in header_lines(settings, watch_s):
        echo(line)
    # ingest needs no service: it runs while they start (its exception, if any, is raised by result())
    with ThreadPoolExecutor(max_workers=1) as pool:
        ingesting = None if store.exists(settings.store_dir) else pool.submit(_ingest, settings)
        if ingesting is not None:
            echo("demo: the bar store is empty; ingesting the shipped DSE data while the services start")
        supervisor.up(settings, echo)
        services_up = time.monotonic()
        if ingesting is not None:
            echo(ingesting.result())
    kafka_io.ensure_topics(settings)
    window = replay_window(settings)
    engine = database.engine(settings)
    database.migrate(engine)
    # the job starts (Spark's JVM, the Kafka source: ~45 s on 2 cores) while the first model trains; it reads
    # nothing until the replay begins, and the replay waits until it serves the model
    info = supervisor.start_program(settings, "stream", STREAM_ENVIRONMENT)
    echo(f"demo: streaming job {info['statename']} under supervisor (log {supervisor.log_path(settings, 'stream')})")
    if registry.production_ref(settings) is None:
        await_model(settings, engine, _first_model(settings, window, echo), echo)
    before = served_predictions(engine)
    echo(f"demo: replaying {window.start}..{window.end} at {DEMO_SPEED:g} trading days/s")
    replayer = subprocess.Popen([_dse(), "replay", "--from", str(window.start),
                                 "--to", str(window.end), "--speed", str(DEMO_SPEED)], stdout=subprocess.DEVNULL,
                                cwd=settings.project_dir)
    first_at = None
    deadline = time.monotonic() + watch_s
    next_line = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(1)
        # a cheap count each second until the first prediction, so it shows when it lands; a full line every 5 s
        first = first_at is None and served_predictions(engine) > before
        if not first and time.monotonic() < next_line:
            continue
        next_line = time.monotonic() + 5
        now = progress(settings, engine)
        echo(now.line())
        if first:
            first_at = time.monotonic()
            echo(f"demo: first prediction {first_at - started:.0f} s after the demo started, "
                 f"{first_at - services_up:.0f} s after the services were up")
        if now.predictions > before:
            show(database.read_frame(engine, "SELECT symbol, date, probability, label, model_version FROM "
                                             "predictions WHERE role = :role ORDER BY date DESC, probability DESC "
                                             "LIMIT 8", role=tables.PRODUCTION))
    replayer.wait()
    for line in closing_lines(settings):
        echo(line)
