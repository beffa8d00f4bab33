"""Helpers every test layer shares: private platform instances, free ports, waiting on a condition."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg2

from dse_platform import credentials
from dse_platform.config import KAFKA_PORT_STEP, PROJECT_DIR, Settings
from dse_platform.data import store
from dse_platform.serving import database

# "today" of the tests: fixed, so date rules (future dates) do not drift with the clock
TODAY = dt.date(2026, 11, 24)
DSE = str(Path(sys.executable).parent / "dse")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_run(count: int, step: int) -> int:
    """A port p with p, p + step, ... p + (count-1)*step all free: the local brokers and Spark workers' layout."""
    for _ in range(50):
        base = free_port()
        try:
            with contextlib.ExitStack() as held:
                for n in range(1, count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", base + n * step))
            return base
        except OSError:
            continue
    raise AssertionError(f"no run of {count} free ports {step} apart found")


def scale_out_env(brokers: int, workers: int) -> dict[str, str]:
    """`dse up`'s size settings for ``brokers`` local brokers and a Spark master with ``workers`` workers, on free
    port runs (broker n: both ports + KAFKA_PORT_STEP * (n-1); worker n: the master's ports + n)."""
    return {"DSE_KAFKA_BROKERS": str(brokers), "DSE_SPARK_WORKERS": str(workers),
            "DSE_KAFKA_PORT": str(free_port_run(brokers, KAFKA_PORT_STEP)),
            "DSE_KAFKA_CONTROLLER_PORT": str(free_port_run(brokers, KAFKA_PORT_STEP)),
            "DSE_SPARK_MASTER_PORT": str(free_port_run(workers + 1, 1)),
            "DSE_SPARK_MASTER_UI_PORT": str(free_port_run(workers + 1, 1))}


def platform_env_for(home: Path, **extra: str) -> dict[str, str]:
    """Environment for a private platform instance: its own var/ folder and free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSE_")}
    env.update({
        "DSE_HOME": str(home),
        "DSE_JARS_DIR": str(PROJECT_DIR / "var" / "jars"),
        "DSE_KAFKA_PORT": str(free_port()),
        "DSE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "DSE_MLFLOW_PORT": str(free_port()),
        "DSE_AIRFLOW_PORT": str(free_port()),
        "DSE_POSTGRES_PORT": str(free_port()),
        "DSE_DASHBOARD_PORT": str(free_port()),
        "DSE_DB_BACKEND": "postgres",
        # not the default: the tests drive each DAG with `airflow dags test`, and a scheduler running the same
        # DAGs on their schedules would race those runs (and poll DSE's live site); the default (unpaused) is
        # checked by test_up_round_trips_then_down_leaves_no_listener, which starts its own platform
        "DSE_AIRFLOW_DAGS_PAUSED": "true",
        "PYSPARK_PYTHON": sys.executable,
    })
    env.update(extra)
    return env


def settings_for(env: dict[str, str]) -> Settings:
    """The Settings object a `dse` process started with ``env`` sees."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings(_env_file=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_dse(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([DSE, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=PROJECT_DIR)


def service_home(tag: str) -> Path:
    """A fresh folder for a platform instance that the ``postgres`` user can traverse.

    pytest's own tmp folders are private to root (mode 700), and PostgreSQL refuses to run as root.
    """
    base = PROJECT_DIR / "var" / "test-homes"
    base.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=base))
    home.chmod(0o755)
    return home


def wait_for(condition: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.5) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def fresh_database(platform: Settings) -> str:
    """A new empty database on the session's PostgreSQL server; its SQLAlchemy URL."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    # the application role may not create databases: the superuser makes one it owns
    conn = psycopg2.connect(platform.local_postgres_url("superuser_password", credentials.POSTGRES_SUPERUSER,
                                                        "postgres").replace("+psycopg2", ""))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} OWNER {credentials.POSTGRES_APP_ROLE}")
    conn.close()
    url = platform.local_postgres_url("app_password", credentials.POSTGRES_APP_ROLE, name)
    database.migrate(database.engine(Settings(_env_file=None, db_url=url)))
    return url


def small_store(shipped: Path, target: Path, symbols: list[str]) -> Path:
    bars = store.read_bars(shipped, symbols=symbols)
    extra = {n: (shipped / n).read_bytes() for n in ("quality_report.json",)}
    store.write_store(target, bars, store.read_calendar(shipped), extra)
    return target


