"""What every benchmark shares: figures with their runs and load, the machine, the versions, the services.

A benchmark module exposes ``run(quick: bool) -> list[Figure]``; `bench/run_all.py` calls each one
inside :func:`platform`, a private platform (`dse up --no-airflow`, PostgreSQL serving database) under
``var/bench/platform`` on free ports, so a user's own platform is never touched. Every value a figure
records keeps the 1-minute load average beside it: on a shared 2-core machine a figure means little
without it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform as host_platform
import socket
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from dse_platform.config import PROJECT_DIR, Settings, get_settings
from dse_platform.runtime import jars, supervisor

sys.path.insert(0, str(PROJECT_DIR))  # the tests' own helpers: free ports, a fresh serving database per measurement
from tests.support.platform import free_port

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
#: the benchmarks' own platform: its store, MLflow registry and database survive between runs, so only the
#: first run ingests and trains
HOME = PROJECT_DIR / "var" / "bench" / "platform"
PORTS_FILE = HOME / "bench-ports.json"
DSE = str(Path(sys.executable).parent / "dse")
PORT_SETTINGS = ("DSE_KAFKA_PORT", "DSE_KAFKA_CONTROLLER_PORT", "DSE_MLFLOW_PORT", "DSE_POSTGRES_PORT",
                 "DSE_DASHBOARD_PORT", "DSE_AIRFLOW_PORT", "DSE_SPARK_UI_PORT")


def load() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]


@dataclass
class Figure:
    """One measured quantity over repeated runs, each value with the load average when it was taken.

    ``ceiling`` names another figure of the same benchmark measured in the same run (what this one
    cannot beat, or the least it must spend); the ratio is this median over that one's.
    """

    bench: str
    name: str
    unit: str
    data: str
    goal: str = ""
    ceiling: str | None = None
    note: str = ""
    values: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    def add(self, value: float) -> float:
        self.values.append(float(value))
        self.loads.append(round(load(), 2))
        return value

    def summary(self) -> dict[str, float]:
        if not self.values:
            return {}
        return {"runs": len(self.values), "min": min(self.values), "median": statistics.median(self.values),
                "max": max(self.values), "load_min": min(self.loads), "load_max": max(self.loads)}


def ratios(figures: list[Figure]) -> dict[tuple[str, str], float]:
    """Each figure's median over its ceiling's median, keyed by (bench, name)."""
    medians = {(f.bench, f.name): f.summary().get("median") for f in figures}
    out = {}
    for f in figures:
        top = medians.get((f.bench, f.ceiling)) if f.ceiling else None
        mine = medians[(f.bench, f.name)]
        if top and mine is not None:
            out[(f.bench, f.name)] = mine / top
    return out


def machine() -> dict[str, object]:
    """Cores, memory and OS of this machine."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1])
    return {"cores": os.cpu_count(), "memory_gb": round(total_kb / 1024 / 1024, 1),
            "cpu": _cpu_model(), "os": f"{host_platform.system()} {host_platform.release()}",
            "host": socket.gethostname()}


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return host_platform.processor() or "unknown"


def _pss_mb(root: psutil.Process) -> tuple[float, int]:
    """Proportional set size of a process and all its descendants (shared pages counted once across them all),
    and how many of them this user may not read (their memory is missing from the sum)."""
    total, denied = 0, 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except psutil.AccessDenied:
            denied += 1
        except psutil.NoSuchProcess:
            continue  # ended between the listing and the read: it holds no memory any more
    return total / 1024 / 1024, denied


class MemorySampler:
    """Peak memory (PSS, MB) of each supervised service and of further named process trees, while a run lasts.

    ``extra`` names process trees outside supervisor by their root pid (the streaming job as a benchmark runs
    it: this process, Spark's driver JVM and the Python workers it forks). PSS rather than RSS: the sum over
    services must not count a shared library once per process.
    """

    def __init__(self, settings: Settings, extra: dict[str, int], interval_s: float = 1.0) -> None:
        self.settings, self.extra, self.interval_s = settings, extra, interval_s
        self.peaks: dict[str, float] = {}
        self.peak_total = 0.0
        self.at_peak: dict[str, float] = {}  # each service's memory in the sample of the whole's peak
        self.last: dict[str, float] = {}  # the last sample: the platform as the run left it
        self.unreadable: dict[str, int] = {}  # service -> most processes of its tree unreadable in one sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> dict[str, float]:
        roots = {name: info["pid"] for name, info in supervisor.process_states(self.settings).items() if info["pid"]}
        roots.update(self.extra)
        now: dict[str, float] = {}
        for name, pid in roots.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                now[name], denied = _pss_mb(psutil.Process(pid))
                if denied:
                    self.unreadable[name] = max(self.unreadable.get(name, 0), denied)
        return now

    def note(self, service: str | None = None) -> str:
        """What the figure misses: processes whose memory this user could not read (run as their owner); for the
        whole platform (no ``service``), also what each service held at its peak."""
        missed = {n: c for n, c in self.unreadable.items() if service is None or n == service}
        parts = []
        if service is None and self.at_peak:
            parts.append("at the peak: " + ", ".join(
                f"{name} {mb:,.0f}" for name, mb in sorted(self.at_peak.items(), key=lambda item: -item[1])))
        if missed:
            parts.append("undercounted: memory unreadable for " + ", ".join(
                f"{c} process(es) of {n}" for n, c in missed.items()))
        return "; ".join(parts)

    def _run(self) -> None:
        while True:
            now = self.last = self.sample()
            for name, mb in now.items():
                self.peaks[name] = max(self.peaks.get(name, 0.0), mb)
            if sum(now.values()) > self.peak_total:
                self.peak_total, self.at_peak = sum(now.values()), now
            if self._stop.wait(self.interval_s):
                return


def versions(settings: Settings) -> dict[str, str]:
    """What the figures depend on: Python, the libraries, and the Kafka broker's jar."""
    found = {"python": sys.version.split()[0]}
    for package in ("pyspark", "mlflow", "scikit-learn", "pandas", "numpy", "SQLAlchemy", "confluent-kafka"):
        found[package] = importlib.metadata.version(package)
    broker = sorted(jars.jar_set_dir(settings, "kafka").glob("kafka_2.13-*.jar"))
    found["kafka broker"] = broker[0].stem.removeprefix("kafka_2.13-") if broker else "not resolved"
    return found


def platform_env(ports: dict[str, str]) -> dict[str, str]:
    """The environment of the benchmarks' platform: its own home and ports, PostgreSQL, no Airflow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSE_")}
    env.update({"DSE_HOME": str(HOME), "DSE_JARS_DIR": str(get_settings().jars_dir), "DSE_DB_BACKEND": "postgres",
                "DSE_AIRFLOW_ENABLED": "false", "PYSPARK_PYTHON": sys.executable, **ports})
    return env


def dse(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """A `dse` command against the benchmarks' platform; its output goes to var/bench/platform/bench.log."""
    HOME.mkdir(parents=True, exist_ok=True)
    with (HOME / "bench.log").open("a") as out:
        out.write(f"\n$ dse {' '.join(args)}\n")
        out.flush()
        return subprocess.run([DSE, *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                              cwd=PROJECT_DIR)


def _use(env: dict[str, str]) -> Settings:
    """Point this process (and what it starts) at the benchmarks' platform."""
    for key in [k for k in os.environ if k.startswith("DSE_")]:
        del os.environ[key]
    os.environ.update(env)
    get_settings.cache_clear()
    return get_settings()


@contextlib.contextmanager
def platform(echo: Callable[[str], None] = print) -> Iterator[Settings]:
    """The benchmarks' platform, up and holding a store and a production model; stopped after if started here.

    Services already running under var/bench/platform (a previous run left them, or someone started them
    with its ports) are reused and left running.
    """
    saved = dict(os.environ)
    HOME.mkdir(parents=True, exist_ok=True)
    # PostgreSQL runs as the postgres user, which must reach its data folder under the home
    for folder in (HOME.parent, HOME):
        folder.chmod(0o755)
    ports = json.loads(PORTS_FILE.read_text()) if PORTS_FILE.exists() else {}
    env = platform_env(ports)
    started = False
    if not ports or dse(env, "status", timeout=120).returncode != 0:
        ports = {name: str(free_port()) for name in PORT_SETTINGS}
        PORTS_FILE.write_text(json.dumps(ports, indent=1))
        env = platform_env(ports)
        echo(f"bench: starting a private platform under {HOME} (dse up --no-airflow; log {HOME / 'bench.log'})")
        if dse(env, "up", "--no-airflow", timeout=900).returncode != 0:
            raise SystemExit(f"bench: `dse up --no-airflow` failed for {HOME}: see {HOME / 'bench.log'}, fix it, "
                             "then run again")
        started = True
    else:
        echo(f"bench: reusing the platform already running under {HOME}")
    try:
        settings = _use(env)
        _provision(env, settings, echo)
        yield settings
    finally:
        if started:
            echo("bench: stopping the private platform (dse down)")
            dse(env, "down", timeout=300)
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


def _provision(env: dict[str, str], settings: Settings, echo: Callable[[str], None]) -> None:
    """The shipped data ingested and a production model registered, each only when missing."""
    from dse_platform.model import registry

    if not settings.store_dir.exists():
        echo("bench: ingesting the shipped data into the bench platform (once)")
        if dse(env, "ingest").returncode != 0:
            raise SystemExit(f"bench: `dse ingest` failed: see {HOME / 'bench.log'}")
    if registry.production_ref(settings) is None:
        echo("bench: training and promoting a production model on the bench platform (once)")
        if dse(env, "train", "--promote").returncode != 0 or registry.production_ref(settings) is None:
            raise SystemExit(f"bench: `dse train --promote` left no production model: see {HOME / 'bench.log'}")
    if registry.challenger_ref(settings) is None:
        # the streaming figures include shadow scoring: the challenger alias on the production version
        registry.connect(settings).set_registered_model_alias(
            settings.model_name, settings.challenger_alias, registry.production_ref(settings).version)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _load_range(summary: dict[str, float]) -> str:
    return f"{summary['load_min']:.1f}-{summary['load_max']:.1f}" if summary else "-"


def table(figures: list[Figure]) -> list[str]:
    """The figures as Markdown table lines (also what the terminal shows)."""
    found = ratios(figures)
    lines = ["| bench | figure | unit | data | runs | min | median | max | ceiling | ratio | load avg | goal |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in figures:
        s = f.summary()
        ratio = found.get((f.bench, f.name))
        lines.append(
            f"| {f.bench} | {f.name}{' (' + f.note + ')' if f.note else ''} | {f.unit} | {f.data} | "
            f"{s.get('runs', 0)} | {_fmt(s.get('min'))} | {_fmt(s.get('median'))} | {_fmt(s.get('max'))} | "
            f"{f.ceiling or '-'} | {'-' if ratio is None else f'{ratio:.3g}'} | "
            f"{_load_range(s)} | {f.goal or '-'} |")
    return lines


def write(figures: list[Figure], quick: bool, started: dt.datetime, settings: Settings, command: str,
          failed: list[str]) -> Path:
    """``bench/results/<UTC timestamp>.json`` and ``bench/results/latest.md``; returns the JSON's path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    finished = dt.datetime.now(dt.UTC)
    header = {"started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
              "command": command, "quick": quick, "machine": machine(), "versions": versions(settings),
              "failed": failed}
    found = ratios(figures)
    records = [{**asdict(f), **f.summary(), "ratio_to_ceiling": found.get((f.bench, f.name))} for f in figures]
    path = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({**header, "figures": records}, indent=1, default=str) + "\n")
    m = header["machine"]
    lines = [f"# Benchmarks, {header['started']} (UTC)", "",
             f"`{command}`{' (QUICK: fewer repeats and smaller data than a full run)' if quick else ''}; "
             f"{header['finished']} finished.", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, {m['os']}.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()) + ".", "",
             "Each value is min/median/max over the runs; the load average is the 1-minute one at each run's end; "
             "the ratio is the median over the ceiling's median, measured in the same run.", "",
             *table(figures), "", *(f"FAILED: {line}" for line in failed), "",
             f"Raw values: `{path.relative_to(PROJECT_DIR)}`.", ""]
    (RESULTS_DIR / "latest.md").write_text("\n".join(lines))
    return path
