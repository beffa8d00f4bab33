"""Running the streaming job from tests: its environment, a bounded run, and the tables it wrote."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pandas as pd
from sqlalchemy import text

from dse_platform.config import Settings
from dse_platform.serving import database
from tests.support.platform import DSE, free_port

#: the tables a run writes, each with the columns compared across runs (ids first)
TABLE_COLUMNS = {"predictions": ["symbol", "date", "probability", "label", "model_version"],
                 "prediction_outcomes": ["symbol", "date", "next_date", "actual", "correct", "model_version"],
                 "bars": ["symbol", "date", "close", "volume"],
                 "dead_letters": ["topic", "partition", "offset", "reason", "raw_size"]}


def job_env(platform_env: dict, served: Settings, topic: dict, **extra: str) -> dict[str, str]:
    """The job's environment: the platform's, the topic's names, the served model, its own checkpoint and UI port."""
    cfg = topic["cfg"]
    home = Path(platform_env["DSE_HOME"])
    env = {**platform_env, "DSE_STORE_DIR": str(cfg.store_dir), "DSE_BARS_TOPIC": cfg.bars_topic,
           "DSE_TICKS_TOPIC": cfg.ticks_topic, "DSE_PREDICTIONS_TOPIC": f"pred-{cfg.bars_topic}",
           "DSE_DEADLETTER_TOPIC": f"dead-{cfg.bars_topic}", "DSE_MODEL_NAME": served.model_name,
           "DSE_SPARK_UI_PORT": str(free_port()), "DSE_STREAM_MODEL_POLL_S": "2",
           "DSE_STREAM_CHECKPOINT": str(home / "checkpoints" / uuid.uuid4().hex[:8])}
    env.update(extra)
    return env


def bounded_run(env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """`dse stream --trigger available-now`; fails the test with the log's error lines unless it ends cleanly."""
    proc = subprocess.run([DSE, "stream", "--trigger", "available-now"], env=env, capture_output=True, text=True,
                          timeout=timeout)
    problems = [line for line in proc.stderr.splitlines() if re.search(r"error|exception|traceback", line, re.I)]
    assert proc.returncode == 0, "\n".join(problems[:40]) or proc.stderr[-4000:]
    assert "terminated with error" not in proc.stderr
    return proc


def tables(url: str) -> dict[str, pd.DataFrame]:
    """The serving tables, sorted, with the columns two equivalent runs must agree on (and all features)."""
    engine = database.engine(Settings(_env_file=None, db_url=url))
    out = {}
    for name, cols in TABLE_COLUMNS.items():
        frame = database.read_frame(engine, name)[cols]
        out[name] = frame.sort_values(cols[:3]).reset_index(drop=True)
    out["features"] = database.read_frame(engine, "features")
    return out


def count(url: str, table: str) -> int:
    engine = database.engine(Settings(_env_file=None, db_url=url))
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
