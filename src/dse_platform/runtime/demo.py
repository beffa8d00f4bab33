"""`make demo`: the whole platform on one machine, from a fresh clone to live predictions.

Services up -> ingest (if the store is empty) -> train and promote a first model (if
none) -> start the streaming job in the background -> replay the last year of shipped
bars at demo speed -> print predictions as they land, and where every UI is.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import ingest as ingest_mod
from dse_platform.data import store
from dse_platform.model import gate, registry, training
from dse_platform.runtime import supervisor
from dse_platform.serving import database
from dse_platform.streams import kafka_io

DEMO_SPEED = 8.0  # trading days per second: a year in about half a minute
#: small first micro-batches: the first predictions show in seconds instead of after one 50k-record batch
STREAM_ENVIRONMENT = {"DSE_STREAM_MAX_OFFSETS": "5000"}


def _prediction_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(tables.predictions)).scalar_one()


def run(settings: Settings, echo: Callable[[str], None], show: Callable[[object], None],
        watch_s: float = 90.0) -> None:
    """Everything `make demo` does; returns after ``watch_s`` seconds of showing predictions."""
    supervisor.up(settings, echo)
    services_up = time.monotonic()
    if not store.exists(settings.store_dir):
        echo("demo: the bar store is empty; ingesting the shipped DSE data")
        ingest_mod.ingest([settings.data_dir], settings.store_dir, progress=True,
                          reference_file=settings.reference_file)
    kafka_io.ensure_topics(settings)
    if registry.production_ref(settings) is None:
        echo("demo: no production model yet; training one on the whole history (walk-forward evaluated)")
        result = training.train(settings)
        for line in training.summary_lines(result, settings.gate_metric):
            echo(line)
        decision = gate.promote(settings, result.version, source="dse demo")
        echo(f"demo: gate {'PROMOTED' if decision.promoted else 'HELD'} version {result.version}: {decision.reason}")
        if not decision.promoted:
            gate.promote(settings, result.version, force=True, source="dse demo (first model)")
            echo("demo: promoted it anyway as the first model so the demo can score (recorded as forced)")
    engine = database.engine(settings)
    database.migrate(engine)
    info = supervisor.start_program(settings, "stream", STREAM_ENVIRONMENT)
    echo(f"demo: streaming job {info['statename']} under supervisor (log {supervisor.log_path(settings, 'stream')})")
    last = store.read_bars(settings.store_dir, columns=["symbol", "date"])["date"].max()
    start = last - dt.timedelta(days=365)
    before = _prediction_count(engine)
    echo(f"demo: replaying {start}..{last} at {DEMO_SPEED:g} trading days/s")
    replayer = subprocess.Popen([str(Path(sys.executable).parent / "dse"), "replay", "--from", str(start), "--to",
                                 str(last), "--speed", str(DEMO_SPEED)], stdout=subprocess.DEVNULL,
                                cwd=settings.project_dir)
    first_at = None
    deadline = time.monotonic() + watch_s
    while time.monotonic() < deadline:
        time.sleep(5)
        count = _prediction_count(engine)
        if count > before and first_at is None:
            first_at = time.monotonic() - services_up
            echo(f"demo: first prediction {first_at:.0f} s after the services were up")
        show(database.read_frame(engine, "SELECT symbol, date, probability, label, model_version FROM "
                                           "predictions ORDER BY date DESC, probability DESC LIMIT 8"))
        echo(f"demo: {count:,} predictions stored")
    replayer.wait()
    echo(f"MLflow  {settings.tracking_uri}   (runs, registry: alias '{settings.model_alias}' on "
         f"{settings.model_name})")
    echo(f"Airflow {settings.airflow_url}   (DAGs dse_streaming, dse_nightly_retrain, dse_monitoring)")
    echo(f"Spark   http://{settings.host}:{settings.spark_ui_port}   (the streaming job's UI)")
    echo("The streaming job keeps running; `dse down` stops it and every service.")
