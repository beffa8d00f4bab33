"""`make demo` as a new user meets it: time to the first stored prediction, and the whole platform's memory.

`dse demo` runs in a fresh private home (var/bench/demo, free ports, every service including Airflow),
so each run pays what a fresh clone pays: services up, the shipped history ingested, a first model
trained walk-forward and promoted, the streaming job started, the replay begun. This process polls the
serving database every 0.5 s for the first production prediction; meanwhile every supervised service's
process tree is sampled each second (PSS, as in bench_stream). The demo is stopped and its home removed
after (its logs are kept in var/bench/demo-logs). Full runs only: one run takes 5 to 10 minutes, more
than `make bench QUICK=1` allows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

from sqlalchemy.exc import SQLAlchemyError

from dse_platform.config import PROJECT_DIR, Settings
from dse_platform.contracts.tables import PRODUCTION
from dse_platform.errors import PlatformError
from dse_platform.serving import database

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import DSE, PORT_SETTINGS, Figure, MemorySampler

from tests.support.platform import free_port

HOME = PROJECT_DIR / "var" / "bench" / "demo"
LOGS = PROJECT_DIR / "var" / "bench" / "demo-logs"
#: the demo stops by itself after this long; the run ends at the first prediction plus STREAMING_S anyway
TIMEOUT_S = 600
#: memory keeps being sampled this long after the first prediction: the job at work, not starting
STREAMING_S = 30
DATA = "`dse demo` in a fresh home: every service with Airflow, ingest, first model, the streaming job, replay"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSE_")}
    env.update({"DSE_HOME": str(HOME), "DSE_JARS_DIR": os.environ.get("DSE_JARS_DIR", ""),
                "PYSPARK_PYTHON": sys.executable, **{name: str(free_port()) for name in PORT_SETTINGS}})
    return {k: v for k, v in env.items() if v}


def _settings(env: dict[str, str]) -> Settings:
    """The demo's settings as its processes see them: from its environment alone, not this process's."""
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings(_env_file=None)


def _predictions(settings: Settings) -> int:
    """Production predictions stored so far; 0 while the database or its tables do not exist yet."""
    try:
        frame = database.read_frame(database.engine(settings), "SELECT count(*) AS n FROM predictions "
                                                               "WHERE role = :role", role=PRODUCTION)
    except (PlatformError, SQLAlchemyError):
        return 0
    return int(frame["n"].iloc[0])


def once() -> tuple[float, MemorySampler]:
    """Seconds from `dse demo` to the first stored prediction, and the memory sampled meanwhile."""
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    for folder in (HOME.parent, HOME):  # PostgreSQL runs as the postgres user, which must reach its data folder
        folder.chmod(0o755)
    env = _env()
    settings = _settings(env)
    log = (HOME / "demo.log").open("w")
    started = time.monotonic()
    demo = subprocess.Popen([DSE, "demo", "--watch", str(TIMEOUT_S)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=PROJECT_DIR, start_new_session=True)
    first = None
    try:
        with MemorySampler(settings, {"dse demo (the CLI and its replay)": demo.pid}) as memory:
            while demo.poll() is None and time.monotonic() - started < TIMEOUT_S:
                if first is None and _predictions(settings) > 0:
                    first = time.monotonic() - started
                if first is not None and time.monotonic() - started > first + STREAMING_S:
                    break
                time.sleep(0.5)
        if first is None:
            raise RuntimeError(f"bench_demo: no prediction within {TIMEOUT_S} s: see {LOGS / 'demo.log'}")
        return first, memory
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(timeout=60)
        subprocess.run([DSE, "down"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_DIR, timeout=300)
        log.close()
        shutil.rmtree(LOGS, ignore_errors=True)  # the last run's logs stay for a look; its data goes
        shutil.copytree(HOME / "logs", LOGS)
        shutil.copy(HOME / "demo.log", LOGS)
        shutil.rmtree(HOME, ignore_errors=True)


def run(quick: bool) -> list[Figure]:
    """One fresh `dse demo` (full runs only)."""
    if quick:
        print("bench_demo: skipped in QUICK runs (one demo takes 5 to 10 minutes)")
        return []
    first, memory = once()
    figures = [Figure("demo", "dse demo: start to first stored prediction", "s", DATA, goal="< 90 s")]
    figures[0].add(first)
    for service, mb in sorted(memory.peaks.items()):
        figures.append(Figure("memory", f"peak PSS in the demo: {service}", "MB", DATA, note=memory.note(service)))
        figures[-1].add(mb)
    figures.append(Figure("memory", "peak PSS in the demo: whole platform", "MB", DATA, goal="< 4,096 MB",
                          note=memory.note()))
    figures[-1].add(memory.peak_total)
    figures.append(Figure(
        "memory", f"PSS in the demo {STREAMING_S} s after the first prediction: whole platform", "MB", DATA,
        note=", ".join(f"{name} {mb:,.0f}" for name, mb in sorted(memory.last.items(), key=lambda item: -item[1]))))
    figures[-1].add(sum(memory.last.values()))
    return figures
