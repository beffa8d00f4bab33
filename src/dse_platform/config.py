"""One settings object for the whole platform.

Every knob is an environment variable prefixed ``DSE_`` (or a line in ``.env``);
the README's configuration table lists them all with their defaults. ``.env`` is
read from the project root, wherever ``dse`` runs. Paths
default to folders under ``var/`` of the project so that everything generated
at run time sits in one ignored place.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

from dse_platform import credentials
from dse_platform.errors import PlatformError

PROJECT_DIR = Path(__file__).resolve().parents[2]
#: local broker n listens on DSE_KAFKA_PORT + step*(n-1) (controller likewise): far enough apart that the
#: defaults 9092/9093 never collide
KAFKA_PORT_STEP = 10


class Settings(BaseSettings):
    """Platform configuration, read from ``DSE_*`` environment variables and ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="DSE_", env_file=PROJECT_DIR / ".env", env_file_encoding="utf-8", extra="ignore",
        frozen=True,
    )

    project_dir: Path = Field(PROJECT_DIR, description="Checkout holding dags/, jobs/, jvm/, data/.")
    home: Path = Field(PROJECT_DIR / "var", description="Folder for all generated state.")
    host: str = Field("127.0.0.1", description="Address every local service listens on.")

    kafka_port: int = Field(9092, description="Kafka broker listener port (the first local broker's).")
    kafka_controller_port: int = Field(9093, description="Kafka KRaft controller port (the first local broker's).")
    kafka_brokers: int = Field(1, ge=1, le=9, description=(
        f"Local KRaft brokers `dse up` starts, one controller quorum; broker n's ports are the two above "
        f"+ {KAFKA_PORT_STEP}*(n-1)."))
    kafka_bootstrap: str | None = Field(
        None, description="Existing brokers to use instead of the local one (host:port,...)."
    )
    kafka_sasl: bool | None = Field(None, description=(
        "Kafka clients and brokers authenticate with SASL/SCRAM-SHA-512 (default: on for 3 or more local brokers, "
        "off for one broker on DSE_HOST)."))
    kafka_username: str | None = Field(
        None, description="SCRAM user of the platform's Kafka clients (default: the local brokers' generated `dse`).")
    kafka_password: SecretStr | None = Field(
        None, description="Password of DSE_KAFKA_USERNAME (default: var/secrets/kafka.json of the local brokers).")
    topic_partitions: int = Field(3, ge=1, description="Partitions of topics the platform creates.")
    topic_replication: int | None = Field(
        None, ge=1, description="Replication factor of created topics (default: DSE_KAFKA_BROKERS, at most 3).")
    topic_min_insync: int | None = Field(
        None, ge=1, description="min.insync.replicas of created topics (default: a majority of the replicas).")
    bars_topic: str = Field("dse.bars.v1", description="Topic of end-of-day / intraday bars.")
    ticks_topic: str = Field("dse.ticks.v1", description="Topic of live price snapshots.")
    predictions_topic: str = Field("dse.predictions.v1", description="Topic of scored bars.")
    deadletter_topic: str = Field("dse.deadletter.v1", description="Topic of rejected records.")

    mlflow_port: int = Field(5000, description="MLflow tracking server port.")
    mlflow_tracking_uri: str | None = Field(
        None, description="Existing MLflow server to use instead of the local one."
    )
    mlflow_backend_uri: str | None = Field(
        None, description="MLflow metadata store; default SQLite under var/mlflow (PostgreSQL URL allowed)."
    )
    mlflow_auth: bool = Field(True, description="Run the local MLflow server with logins (MLflow's basic-auth app).")
    mlflow_username: str | None = Field(
        None, description="User the platform's MLflow clients log in as (default: the local server's generated admin).")
    mlflow_password: SecretStr | None = Field(
        None, description="Password of DSE_MLFLOW_USERNAME (default: var/secrets/mlflow.json of the local server).")
    mlflow_http_retries: int = Field(2, ge=0, description="Retries of one MLflow request before it counts as down.")
    mlflow_http_timeout_s: int = Field(30, ge=1, description="Timeout of one MLflow request (seconds).")
    model_name: str = Field("dse-direction", description="Registered model name.")
    model_alias: str = Field("production", description="Registry alias that serving follows.")
    challenger_alias: str = Field(
        "challenger", description="Registry alias the stream scores in shadow beside production (empty: none).")

    # ---- model lifecycle: every training and gate threshold in one place ----------------------
    train_folds: int = Field(6, ge=2, description="Walk-forward folds (test windows) of `dse train`.")
    train_test_sessions: int = Field(120, ge=5, description="Sessions in each walk-forward test window.")
    train_purge_sessions: int = Field(5, ge=1, description="Sessions dropped between train and test data.")
    train_min_sessions: int = Field(250, ge=1, description="Fewest training sessions the first fold may have.")
    train_c: float = Field(0.1, gt=0, description="Inverse L2 strength of the logistic regression.")
    train_hgb_iterations: int = Field(60, ge=1, description="Boosting iterations (trees) of the hgb recipe.")
    train_holdout_sessions: int = Field(
        60, ge=0, description="Latest sessions kept out of every choice and scored once by the served model (0: none).")
    train_recipe: Literal["logreg", "hgb"] = Field(
        "hgb", description="Model recipe `dse train` fits (named in model/recipes.py).")
    gate_metric: Literal["roc_auc", "balanced_accuracy", "accuracy", "neg_log_loss"] = Field(
        "roc_auc", description="Score the champion/challenger gate compares (higher is better).")
    gate_margin: float = Field(0.0, ge=0, description="How far above the champion the lower bound of the "
                               "challenger's paired difference must be (the metric's units).")
    gate_confidence: float = Field(0.95, gt=0.5, lt=1, description="Two-sided confidence of the gate's date bootstrap.")
    gate_must_beat_baselines: bool = Field(True, description="The challenger must clearly beat the strongest baseline.")
    gate_n_boot: int = Field(2000, ge=100, description="Bootstrap resamples of dates the gate draws.")
    gate_min_dates: int = Field(20, ge=2, description="Fewest dates in the gate's window before it can promote.")
    backtest_cost_bps: float = Field(30.0, ge=0, description="Cost per position change in the backtest (bps).")

    # ---- monitoring thresholds (the dse_monitoring DAG) -------------------------------------------
    monitor_psi_threshold: float = Field(0.25, gt=0, description="PSI above which a feature counts as drifted.")
    monitor_reference_sessions: int = Field(250, ge=20, description="Store sessions the drift reference spans.")
    monitor_drift_sessions: int = Field(20, ge=1, description="Latest sessions drift compares with the reference.")
    monitor_live_days: int = Field(30, ge=1, description="Days of resolved outcomes live performance covers.")
    monitor_min_outcomes: int = Field(200, ge=1, description="Outcomes a version needs before live AUC can alert.")
    monitor_min_dates: int = Field(5, ge=2, description="Sessions a version needs before live AUC can alert.")
    monitor_live_margin: float = Field(0.0, ge=0, description="How far below the strongest baseline the upper "
                                       "bound of live AUC's difference may go before an alert.")
    monitor_max_dead_letters: int = Field(1000, ge=0, description="Dead letters per session day before an alert.")

    # ---- orchestration (Airflow) --------------------------------------------------------------
    retrain_schedule: str = Field("30 15 * * 0-4", description="Cron (Asia/Dhaka) of the nightly retrain.")
    live_schedule: str = Field("55 9 * * 0-4", description="Cron (Asia/Dhaka) that starts the live ingest.")
    monitoring_schedule: str = Field("0 16 * * 0-4", description="Cron (Asia/Dhaka) of the monitoring run.")
    live_poll_interval_s: float = Field(30.0, gt=0, description="Seconds between polls of DSE's page in a session.")
    live_http_timeout_s: float = Field(20.0, gt=0, description="Timeout of one fetch of DSE's page.")
    live_url: str = Field("https://www.dsebd.org/latest_share_price_scroll_l.php",
                          description="DSE latest-share-price page the live connector polls.")
    eod_schedule: str = Field("0 15 * * 0-4", description="Cron (Asia/Dhaka) that publishes the day's official bars.")
    eod_url: str = Field("https://www.dsebd.org/day_end_archive.php",
                         description="DSE day-end archive page `dse eod` reads the official bars from.")

    airflow_port: int = Field(8080, description="Airflow api-server (UI) port.")
    airflow_enabled: bool = Field(True, description="Start Airflow with `dse up`.")
    airflow_dags_paused: bool = Field(
        False, description="Create the project's DAGs paused (their schedules then wait for a person to unpause).")
    airflow_parallelism: int = Field(
        8, gt=0, description="Task processes Airflow's LocalExecutor keeps (all started at once; Airflow's 32 "
                             "idle ones held ~400 MB).")
    dashboard_port: int = Field(8501, description="Port of the Streamlit dashboard.")
    public_mlflow_url: str | None = Field(
        None, description="MLflow's URL as browsers reach it, for links (default: the tracking URI).")
    public_spark_url: str | None = Field(
        None, description="The streaming job's Spark UI as browsers reach it (default: DSE_HOST, DSE_SPARK_UI_PORT).")
    public_dashboard_url: str | None = Field(
        None, description="The dashboard as browsers reach it (default: DSE_HOST, DSE_DASHBOARD_PORT).")
    dashboard_refresh_s: float = Field(
        60.0, ge=0, description="Seconds between the dashboard's automatic refreshes (0: only on demand).")
    dashboard_db_user: str = Field(
        "dse_reader", description="Read-only PostgreSQL role the dashboard connects as (created by `dse up`).")
    dashboard_db_url: str | None = Field(
        None, description="SQLAlchemy URL the dashboard reads through (a read-only role) when DSE_DB_URL is set.")

    db_backend: Literal["sqlite", "postgres"] = Field(
        "sqlite", description="Serving database kind; postgres starts a local server unless db_url is set."
    )
    db_url: str | None = Field(None, description="SQLAlchemy URL of an existing serving database.")
    postgres_port: int = Field(5432, description="Port of the local PostgreSQL server.")
    postgres_bin: Path | None = Field(
        None, description="Folder with initdb/postgres; default: newest under /usr/lib/postgresql."
    )

    java_home: Path | None = Field(None, description="JDK to use (17+); default: java on PATH.")
    maven: str = Field("mvn", description="Maven executable used to resolve the jars.")
    spark_master_override: str | None = Field(
        None, alias="DSE_SPARK_MASTER",
        description="Spark master for the streaming job (default: the local standalone master when "
                    "DSE_SPARK_WORKERS > 0, else local[*]).")
    spark_workers: int = Field(
        0, ge=0, description="Spark standalone workers `dse up` starts beside a local master (0: none, local mode).")
    spark_master_port: int = Field(7077, description="Port of the local Spark master (worker n: this + n).")
    spark_master_ui_port: int = Field(8090, description="Web UI port of the local Spark master (worker n: this + n).")
    spark_worker_cores: int = Field(1, ge=1, description="Cores each local Spark worker offers its executors.")
    spark_worker_memory: str = Field("1g", description="Memory each local Spark worker offers its executors.")
    spark_ui_port: int = Field(4040, description="Port of the streaming job's Spark UI.")
    stream_trigger: Literal["processing-time", "available-now"] = Field(
        "processing-time", description="Long-running service, or a bounded run of what the topics hold.")
    stream_interval_s: float = Field(0.0, ge=0, description="Processing-time trigger interval (0: back to back).")
    stream_max_offsets: int = Field(50_000, ge=1, description="Most Kafka records one micro-batch reads.")
    stream_shuffle_partitions: int = Field(
        2, ge=1, description="State partitions (fixed by the first run of a checkpoint).")
    stream_model_poll_s: float = Field(5.0, gt=0, description="How often the job asks the registry for the alias.")
    stream_checkpoint_override: Path | None = Field(
        None, alias="DSE_STREAM_CHECKPOINT", description="Checkpoint folder (default var/checkpoints/stream).")

    health_timeout_s: float = Field(180.0, description="How long `dse up` waits for services to be healthy.")

    data_dir: Path = Field(PROJECT_DIR / "data", description="Raw DSE files `dse ingest` reads by default.")
    reference_file: Path = Field(PROJECT_DIR / "data" / "instruments-sector-category-2026.csv",
                                 description="Instrument reference (trading code, sector, category) for ingest.")
    store_dir_override: Path | None = Field(
        None, alias="DSE_STORE_DIR", description="Canonical bar store (default var/store)."
    )
    jars_dir_override: Path | None = Field(
        None, alias="DSE_JARS_DIR", description="Where Maven copies the jars (default var/jars)."
    )

    # ---- derived locations -------------------------------------------------------------------
    @property
    def jars_dir(self) -> Path:
        return self.jars_dir_override or self.home / "jars"

    @property
    def store_dir(self) -> Path:
        return self.store_dir_override or self.home / "store"

    @property
    def stream_checkpoint(self) -> Path:
        return self.stream_checkpoint_override or self.home / "checkpoints" / "stream"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def kafka_ports(self) -> list[int]:
        """Listener port of each local broker, node 1 first."""
        return [self.kafka_port + KAFKA_PORT_STEP * n for n in range(self.kafka_brokers)]

    @property
    def kafka_controller_ports(self) -> list[int]:
        """Controller port of each local broker, node 1 first."""
        return [self.kafka_controller_port + KAFKA_PORT_STEP * n for n in range(self.kafka_brokers)]

    @property
    def bootstrap_servers(self) -> str:
        """Every broker, so a client still finds the cluster while any one of them is down."""
        return self.kafka_bootstrap or ",".join(f"{self.host}:{port}" for port in self.kafka_ports)

    @property
    def replication_factor(self) -> int:
        return self.topic_replication or min(3, self.kafka_brokers)

    @property
    def min_insync_replicas(self) -> int:
        """A majority of the replicas: acks=all then survives losing a minority without losing an acknowledged write."""
        return self.topic_min_insync or self.replication_factor // 2 + 1

    @property
    def local_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def kafka_sasl_enabled(self) -> bool:
        """SASL/SCRAM on: as set, else for a local cluster of three or more brokers (the scale-out profile)."""
        if self.kafka_sasl is not None:
            return self.kafka_sasl
        return self.local_kafka and self.kafka_brokers >= 3

    @property
    def kafka_credentials(self) -> tuple[str, str] | None:
        """(user, password) of the platform's Kafka clients when SASL is on: the settings, else the local brokers'.

        None when SASL is off. Raises when SASL is on and no password is known.
        """
        if not self.kafka_sasl_enabled:
            return None
        if self.kafka_password is not None:
            return self.kafka_username or credentials.KAFKA_USER, self.kafka_password.get_secret_value()
        if self.local_kafka:
            stored = credentials.read(credentials.kafka_file(self.home))
            if stored and stored.get("password"):
                return credentials.KAFKA_USER, stored["password"]
            raise PlatformError(f"Kafka SASL is on but the local brokers' login {credentials.kafka_file(self.home)} "
                                "was not generated yet", "start the brokers with `dse up` (it generates the login)")
        raise PlatformError("DSE_KAFKA_SASL is on but DSE_KAFKA_PASSWORD is not set",
                            "set DSE_KAFKA_USERNAME and DSE_KAFKA_PASSWORD to a SCRAM login of the brokers")

    @property
    def local_spark_cluster(self) -> bool:
        """`dse up` runs a standalone master and workers, and the job uses them unless DSE_SPARK_MASTER says else."""
        return self.spark_workers > 0 and self.spark_master_override is None

    @property
    def spark_master(self) -> str:
        if self.spark_master_override:
            return self.spark_master_override
        return f"spark://{self.host}:{self.spark_master_port}" if self.spark_workers else "local[*]"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"http://{self.host}:{self.mlflow_port}"

    @property
    def local_mlflow(self) -> bool:
        return self.mlflow_tracking_uri is None

    @property
    def mlflow_credentials(self) -> tuple[str, str] | None:
        """(user, password) the platform's MLflow clients send: the settings, else the local server's generated admin.

        None when neither is there (an external server without DSE_MLFLOW_* lets MLflow's own
        MLFLOW_TRACKING_USERNAME/PASSWORD variables apply, or no login at all).
        """
        if (self.mlflow_username is None) != (self.mlflow_password is None):
            given, other = (("DSE_MLFLOW_USERNAME", "DSE_MLFLOW_PASSWORD") if self.mlflow_username is not None
                            else ("DSE_MLFLOW_PASSWORD", "DSE_MLFLOW_USERNAME"))
            raise PlatformError(f"{given} is set but {other} is not: MLflow needs both to log in",
                                f"set {other} too, or unset both to use the local server's generated login")
        if self.mlflow_username is not None and self.mlflow_password is not None:
            return self.mlflow_username, self.mlflow_password.get_secret_value()
        if self.local_mlflow and self.mlflow_auth:
            stored = credentials.read(credentials.mlflow_file(self.home))
            if stored and stored.get("password"):
                return credentials.MLFLOW_ADMIN, stored["password"]
        return None

    @property
    def mlflow_store_uri(self) -> str:
        return self.mlflow_backend_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def local_postgres(self) -> bool:
        return self.db_backend == "postgres" and self.db_url is None

    @property
    def serving_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        if self.db_backend == "postgres":
            return self.local_postgres_url("app_password", credentials.POSTGRES_APP_ROLE, "dse")
        return f"sqlite:///{self.home / 'serving.db'}"

    def local_postgres_url(self, key: str, user: str, database: str) -> str:
        """URL of the local PostgreSQL server as ``user``, with its generated password (``key`` of
        var/secrets/postgres.json) once `dse up` has made it."""
        stored = credentials.read(credentials.postgres_file(self.home)) or {}
        return URL.create("postgresql+psycopg2", username=user, password=stored.get(key) or None, host=self.host,
                          port=self.postgres_port, database=database).render_as_string(hide_password=False)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment and the project's ``.env``.

    Frozen: a caller that needs other values makes a copy (``settings.model_copy(update=...)``).
    """
    return Settings()
