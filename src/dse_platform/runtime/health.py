"""Real health checks: each asks the service itself, never just looks at a pid.

Every check returns ``(healthy, detail)`` and never raises, so ``dse status``
can show all services even when some are down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy import create_engine, text

from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.runtime import broker, spark_cluster
from dse_platform.runtime.spark import APP_NAME

Check = tuple[bool, str]


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library's connection errors during one probe: a failed probe is the answer, not noise."""
    logger = logging.getLogger(logger_name)
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


def kafka_health(settings: Settings, node: int | None = None) -> Check:
    """A metadata request: the cluster answers with its broker list (and, for one ``node``, lists it).

    A node's check bootstraps from that node's own listener and looks for its id among the
    registered, unfenced brokers: a JVM that is up but has not rejoined the cluster is not healthy.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from dse_platform.streams import kafka_io

    servers = settings.bootstrap_servers if node is None else broker.address(settings, node)
    with _quiet("kafka"):
        try:
            admin = KafkaAdminClient(**kafka_io.client_config(settings, servers), request_timeout_ms=4000,
                                     bootstrap_timeout_ms=5000, client_id="dse-health")
        except PlatformError as exc:
            return False, str(exc)
        except (KafkaError, OSError, ValueError) as exc:
            return False, f"no broker answers at {servers}: {type(exc).__name__}"
        try:
            cluster = admin.describe_cluster()
        except (KafkaError, OSError) as exc:
            return False, f"metadata request failed: {exc}"
        finally:
            admin.close()
    # fenced brokers (registered, but not caught up or not heartbeating) are listed too: they do not count
    ids = sorted(b.get("broker_id") for b in cluster.get("brokers", []) if not b.get("is_fenced"))
    if node is not None and node not in ids:
        return False, f"broker {node} not (yet) active in cluster {cluster.get('cluster_id')} (active: {ids})"
    return True, f"cluster {cluster.get('cluster_id')} with {len(ids)} active broker(s)"


def http_health(url: str, expect: str | None = None) -> Check:
    """GET ``url``; healthy on HTTP 200 (and ``expect`` in the body when given)."""
    try:
        resp = httpx.get(url, timeout=4.0)
    except httpx.HTTPError as exc:
        return False, f"{url}: {type(exc).__name__}"
    if resp.status_code != 200:
        return False, f"{url}: HTTP {resp.status_code}"
    if expect is not None and expect not in resp.text:
        return False, f"{url}: unexpected answer {resp.text[:80]!r}"
    return True, f"{url}: HTTP 200"


def mlflow_health(settings: Settings) -> Check:
    return http_health(f"{settings.tracking_uri}/health", expect="OK")


def stream_health(settings: Settings) -> Check:
    """The streaming job's Spark UI lists the job (its REST API answers while the driver lives)."""
    return http_health(f"http://{settings.host}:{settings.spark_ui_port}/api/v1/applications", expect=APP_NAME)


def _spark_master_state(settings: Settings) -> tuple[dict | None, str]:
    """The local master's state as its UI's JSON endpoint reports it, or None and why not."""
    url = f"{spark_cluster.master_ui_url(settings)}/json/"
    try:
        resp = httpx.get(url, timeout=4.0)
        return (resp.json(), url) if resp.status_code == 200 else (None, f"{url}: HTTP {resp.status_code}")
    except (httpx.HTTPError, ValueError) as exc:
        return None, f"{url}: {type(exc).__name__}"


def spark_master_health(settings: Settings) -> Check:
    """The standalone master answers and is the active (ALIVE) one."""
    state, detail = _spark_master_state(settings)
    if state is None:
        return False, detail
    if state.get("status") != "ALIVE":
        return False, f"{settings.spark_master}: status {state.get('status')}"
    return True, f"{settings.spark_master}: ALIVE, {state.get('aliveworkers', 0)} worker(s) alive"


def spark_worker_health(settings: Settings, worker: int) -> Check:
    """The master lists the worker as ALIVE: registered and heartbeating, so executors can be placed on it."""
    state, detail = _spark_master_state(settings)
    if state is None:
        return False, f"master unreachable: {detail}"
    port = spark_cluster.worker_port(settings, worker)
    alive = [w for w in state.get("workers", []) if w.get("port") == port and w.get("state") == "ALIVE"]
    if not alive:
        return False, f"not registered with {settings.spark_master} (as {settings.host}:{port}) yet"
    return True, f"ALIVE at {settings.spark_master}: {alive[0].get('cores')} core(s), {alive[0].get('memory')} MB"


def airflow_health(settings: Settings) -> Check:
    """Airflow's monitor endpoint: metadata DB, scheduler, triggerer and dag-processor all healthy."""
    url = f"{settings.airflow_url}/api/v2/monitor/health"
    try:
        resp = httpx.get(url, timeout=4.0)
        body = resp.json() if resp.status_code == 200 else {}
    except (httpx.HTTPError, ValueError) as exc:
        return False, f"{url}: {type(exc).__name__}"
    if resp.status_code != 200:
        return False, f"{url}: HTTP {resp.status_code}"
    parts = {k: (v or {}).get("status") for k, v in body.items() if isinstance(v, dict)}
    bad = [k for k, status in parts.items() if status != "healthy"]
    if bad or "scheduler" not in parts:
        return False, "not healthy yet: " + ", ".join(f"{k}={parts.get(k)}" for k in bad or ["scheduler"])
    return True, "api-server, " + ", ".join(sorted(parts)) + " healthy"


def sql_health(url: str) -> Check:
    """``SELECT 1`` through SQLAlchemy; the detail names the database (password hidden)."""
    engine = create_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar_one()
        return True, f"{where}: SELECT 1 ok"
    except Exception as exc:  # any driver error means unhealthy; the reason is reported
        first_line = (str(exc).strip().splitlines() or [""])[0][:120]
        return False, f"{where}: {type(exc).__name__}: {first_line}"
    finally:
        engine.dispose()


def database_health(settings: Settings) -> Check:
    """The serving database answers."""
    return sql_health(settings.serving_db_url)
