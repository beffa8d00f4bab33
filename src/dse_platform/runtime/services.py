"""Local services under a process manager (supervisor): Kafka, MLflow, Airflow, PostgreSQL, the dashboard, the stream.

``dse up`` writes a supervisord config under ``var/supervisor``, starts
supervisord, and waits until every service answers its real health check.
The streaming job is a program too, but ``dse up`` leaves it stopped: ``dse
stream --background`` (or the demo) starts it, and supervisor restarts it when
it crashes. ``dse down`` stops every program (whole process groups, so Airflow's
and Spark's children go too) and shuts supervisord down; data under ``var/`` is
left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dse_platform import credentials
from dse_platform.config import Settings
from dse_platform.dashboard import server as dashboard
from dse_platform.runtime import airflow_env, broker, health, jars, mlflow_auth, pgserver, spark, spark_cluster


@dataclass
class Service:
    """One supervised program: how to prepare, run and check it."""

    name: str
    url: str
    ports: list[int]
    command: Callable[[], list[str]]
    check: Callable[[Settings], health.Check]
    port_setting: str
    prepare: Callable[[], object] | None = None
    after_healthy: Callable[[Settings], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: more environment, computed only when the program is launched: secrets stay out of supervisor's config
    secret_env: Callable[[], dict[str, str]] | None = None
    user: str | None = None
    stop_wait_s: int = 30
    #: TERM by default; PostgreSQL gets INT ("fast" shutdown: TERM waits for every client to leave)
    stop_signal: str = "TERM"
    #: a program that exits sooner than this after a start counts as failed to start (-> FATAL)
    start_secs: int = 5
    #: failed starts supervisor retries (waiting 1 s, 2 s, ... longer each time) before giving up (FATAL)
    start_retries: int = 2
    #: started by `dse up` (and waited on), or only on demand (supervisor.start_program)
    autostart: bool = True
    #: supervisor's autorestart: "unexpected" (a non-zero exit) or "true" (any exit)
    autorestart: str = "unexpected"


#: the local Spark cluster's ports all derive from these two
SPARK_PORT_SETTINGS = "DSE_SPARK_MASTER_PORT or DSE_SPARK_MASTER_UI_PORT"


def services(settings: Settings) -> list[Service]:
    """The services this configuration runs locally (existing remote ones are not started)."""
    found: list[Service] = []
    if settings.local_kafka:
        found += [kafka_service(settings, node) for node in broker.nodes(settings)]
    if settings.local_spark_cluster:
        found.append(Service(
            "spark-master", spark_cluster.master_ui_url(settings),
            [settings.spark_master_port, settings.spark_master_ui_port],
            lambda: spark_cluster.master_command(settings), health.spark_master_health, SPARK_PORT_SETTINGS,
            env=spark_cluster.environment(settings)))
        found += [spark_worker_service(settings, n) for n in spark_cluster.workers(settings)]
    if settings.local_mlflow:
        art = settings.home / "mlflow" / "artifacts"
        found.append(Service(
            "mlflow", settings.tracking_uri, [settings.mlflow_port],
            lambda: [str(airflow_env.venv_bin() / "mlflow"), "server",
                     "--backend-store-uri", settings.mlflow_store_uri,
                     "--artifacts-destination", str(art),
                     "--host", settings.host, "--port", str(settings.mlflow_port), "--workers", "1",
                     *(["--app-name", mlflow_auth.APP_NAME] if settings.mlflow_auth else [])],
            health.mlflow_health, "DSE_MLFLOW_PORT",
            prepare=lambda: _prepare_mlflow(settings, art),
            env={"MLFLOW_SERVER_ALLOWED_HOSTS": f"{settings.host}:*,localhost:*",
                 # the server's job runner and its huey consumers (~275 MB each) serve nothing the platform uses
                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                 "PATH": airflow_env.path_with_venv()},
            secret_env=(lambda: mlflow_auth.secret_environment(settings)) if settings.mlflow_auth else None))
    if settings.local_postgres:
        found.append(Service(
            "postgres", f"postgresql://{credentials.POSTGRES_APP_ROLE}@{settings.host}:{settings.postgres_port}/dse",
            [settings.postgres_port], lambda: pgserver.command(settings), pgserver.health,
            "DSE_POSTGRES_PORT", prepare=lambda: pgserver.init_cluster(settings),
            after_healthy=pgserver.ensure_database, user=pgserver.run_user(), stop_signal="INT"))
    if settings.airflow_enabled:
        found.append(Service(
            "airflow", settings.airflow_url, [settings.airflow_port],
            lambda: [str(airflow_env.venv_bin() / "airflow"), "standalone"], health.airflow_health,
            "DSE_AIRFLOW_PORT", prepare=lambda: settings.airflow_home.mkdir(parents=True, exist_ok=True),
            env=airflow_env.airflow_environment(settings), stop_wait_s=60,
            after_healthy=airflow_env.protect_passwords))
    # reads the serving database read-only; its own settings come from the DSE_* environment supervisord inherits
    found.append(Service(
        "dashboard", dashboard.url(settings), [settings.dashboard_port], lambda: dashboard.command(settings),
        dashboard.health, "DSE_DASHBOARD_PORT"))
    # no ports to check: Spark takes the next free UI port rather than failing when this one is busy
    found.append(Service(
        "stream", f"http://{settings.host}:{settings.spark_ui_port}", [],
        lambda: spark.submit_command(settings, "--trigger", "processing-time"), health.stream_health,
        "DSE_SPARK_UI_PORT", prepare=lambda: jars.ensure_jar_set(settings, "spark"), env=spark.spark_env(settings),
        # a crash (PostgreSQL restarted, Kafka away) restarts it; a start that dies within 30 s is retried
        # with a growing pause, and after 10 such failures it stays FATAL for `dse status` to show
        start_secs=30, start_retries=10, autostart=False, autorestart="true"))
    return found


def _prepare_mlflow(settings: Settings, artifacts: Path) -> None:
    """The artifact folder, and the auth ini when the server runs with logins."""
    artifacts.mkdir(parents=True, exist_ok=True)
    if settings.mlflow_auth:
        mlflow_auth.write_config(settings)


def kafka_service(settings: Settings, node: int) -> Service:
    """One broker: ``kafka`` when it is the only one, else ``kafka-<node id>``."""
    return Service(
        "kafka" if settings.kafka_brokers == 1 else f"kafka-{node}", f"kafka://{broker.address(settings, node)}",
        [settings.kafka_ports[node - 1], settings.kafka_controller_ports[node - 1]],
        lambda: broker.command(settings, node), lambda s: health.kafka_health(s, node), "DSE_KAFKA_PORT",
        prepare=lambda: broker.format_storage(settings, node), start_secs=12)


def spark_worker_service(settings: Settings, worker: int) -> Service:
    """Worker n: registers with the local master; a lost one is restarted by supervisor and registers again."""
    return Service(
        f"spark-worker-{worker}", f"http://{settings.host}:{spark_cluster.worker_ui_port(settings, worker)}",
        [spark_cluster.worker_port(settings, worker), spark_cluster.worker_ui_port(settings, worker)],
        lambda: spark_cluster.worker_command(settings, worker), lambda s: health.spark_worker_health(s, worker),
        SPARK_PORT_SETTINGS, env=spark_cluster.environment(settings),
        prepare=lambda: spark_cluster.work_dir(settings, worker).mkdir(parents=True, exist_ok=True),
        # the master refuses a worker at an address it has not yet seen go: retried until it has
        start_retries=10)


def service_names(settings: Settings) -> list[str]:
    return [s.name for s in services(settings)]
