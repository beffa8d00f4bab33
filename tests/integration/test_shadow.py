"""The challenger scored in shadow by the streaming job, against real Kafka, Spark, MLflow and PostgreSQL.

With both aliases set, every bar is scored twice: ``role = 'production'`` by the version the
``production`` alias names and ``role = 'challenger'`` by the one ``challenger`` names, with the same
scoring code, and both get their outcomes. Moving ``challenger`` in the registry (as the MLflow UI does)
switches the shadow while the job runs, and never touches production's rows or the predictions topic.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from dse_platform.config import Settings
from dse_platform.data import store
from dse_platform.model import features, gate, registry, scoring, training
from dse_platform.serving import database
from dse_platform.streams import kafka_io, replay
from tests.support.platform import DSE, free_port, fresh_database, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

PART_ONE = (dt.date(2024, 1, 1), dt.date(2024, 4, 30))
PART_TWO = (dt.date(2024, 5, 1), dt.date(2024, 6, 30))
#: the last session each part's predictions must reach (the parts end on days DSE is closed or near them)
REACHED = (dt.date(2024, 4, 25), dt.date(2024, 6, 25))
KEY = ["symbol", "date"]


@pytest.fixture(scope="module")
def symbols(shipped_store) -> list[str]:
    _, target = shipped_store
    bars = store.read_bars(target, start=PART_ONE[0], end=PART_TWO[1], columns=["symbol", "date"])
    counts = bars.groupby("symbol").size()
    return sorted(counts[counts > 100].index)[::5][:20]


@pytest.fixture(scope="module")
def versions(platform, shipped_store, symbols) -> tuple[Settings, list[str]]:
    """A fresh model name with three trained versions: the first production, the second challenger."""
    _, target = shipped_store
    cfg = platform.model_copy(update={"store_dir_override": target, "model_name": f"shadow-{uuid.uuid4().hex[:8]}",
                                      "train_folds": 3, "train_test_sessions": 60})
    trained = [training.train(cfg, symbols=symbols, cutoff=cutoff).version
               for cutoff in (dt.date(2023, 6, 30), dt.date(2022, 12, 31), dt.date(2022, 6, 30))]
    gate.promote(cfg, trained[0], force=True)
    MlflowClient(cfg.tracking_uri).set_registered_model_alias(cfg.model_name, cfg.challenger_alias, trained[1])
    return cfg, trained


def _predictions(engine, role: str) -> pd.DataFrame:
    frame = database.read_frame(engine, "predictions")
    return frame[frame["role"] == role].sort_values(KEY).reset_index(drop=True)


def _reached(engine, day: dt.date) -> bool:
    """Both roles scored up to ``day``."""
    frame = database.read_frame(engine, "predictions")
    return not frame.empty and frame.groupby("role")["date"].max().reindex(["production", "challenger"]).ge(day).all()


def _reloads(engine, role: str) -> list[str]:
    """The versions the job loaded for ``role``, oldest first."""
    events = database.read_frame(engine, "model_events").sort_values("id")
    events = events[events["event"] == "reloaded"]
    return [v for v, d in zip(events["version"], events["details"], strict=True) if json.loads(d)["role"] == role]


def _offline(cfg: Settings, engine, rows: pd.DataFrame) -> np.ndarray:
    """The challenger's probabilities of the rows' stored features, scored here: what the stream must have written."""
    stored = rows[KEY].merge(database.read_frame(engine, "features"), on=KEY, how="left")
    model = registry.load(cfg, registry.challenger_ref(cfg))
    return scoring.probabilities(model, features.decode(stored["values"]))


def test_the_stream_scores_both_aliases_and_follows_the_challenger_without_touching_production(
        platform, platform_env, versions, shipped_store, symbols):
    cfg, (served, first_shadow, second_shadow) = versions
    _, target = shipped_store
    name = f"bars-{uuid.uuid4().hex[:8]}"
    topics = platform.model_copy(update={"store_dir_override": target, "bars_topic": name,
                                         "ticks_topic": f"ticks-{name}"})
    kafka_io.ensure_topics(topics, [topics.bars_topic, topics.ticks_topic])
    url = fresh_database(platform)
    home = Path(platform_env["DSE_HOME"])
    env = {**platform_env, "DSE_STORE_DIR": str(target), "DSE_BARS_TOPIC": name, "DSE_TICKS_TOPIC": f"ticks-{name}",
           "DSE_PREDICTIONS_TOPIC": f"pred-{name}", "DSE_DEADLETTER_TOPIC": f"dead-{name}",
           "DSE_MODEL_NAME": cfg.model_name, "DSE_SPARK_UI_PORT": str(free_port()), "DSE_STREAM_MODEL_POLL_S": "2",
           "DSE_STREAM_CHECKPOINT": str(home / "checkpoints" / uuid.uuid4().hex[:8]), "DSE_DB_URL": url}
    engine = database.engine(Settings(_env_file=None, db_url=url))
    client = MlflowClient(cfg.tracking_uri)
    log = (home / f"shadow-{name}.log").open("w")
    proc = subprocess.Popen([DSE, "stream"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        replay.replay(topics, *PART_ONE, symbols, progress=False, echo=lambda _: None)
        wait_for(lambda: _reached(engine, REACHED[0]), 400, "both roles' predictions of part one")
        production_before = _predictions(engine, "production")

        client.set_registered_model_alias(cfg.model_name, cfg.challenger_alias, second_shadow)
        wait_for(lambda: _reloads(engine, "challenger")[-1:] == [second_shadow], 30,
                 "the job to follow the challenger alias to its new version")

        replay.replay(topics, *PART_TWO, symbols, progress=False, echo=lambda _: None)
        wait_for(lambda: _reached(engine, REACHED[1]), 400, "both roles' predictions of part two")
        # the topic carries what was served: production's predictions only (once the last batch is published)
        wait_for(lambda: kafka_io.records_in(platform, f"pred-{name}") == len(_predictions(engine, "production")),
                 60, "the predictions topic to hold exactly production's predictions")
        assert proc.poll() is None, "the job must not restart"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        log.close()

    production, challenger = _predictions(engine, "production"), _predictions(engine, "challenger")
    # every bar scored by both, production always by its own version
    pd.testing.assert_frame_equal(production[KEY], challenger[KEY])
    assert set(production["model_version"]) == {served}
    assert _reloads(engine, "production") == [served]
    # production's rows written before the switch are untouched by it: same values, same stamps
    pd.testing.assert_frame_equal(production.merge(production_before[KEY], on=KEY), production_before,
                                  check_exact=True)
    # the shadow switched between the parts: part two entirely by the new version; part one's last bars may
    # still have been in flight at the move, so it is checked up to a few sessions before its end
    part_one = challenger[challenger["date"] <= dt.date(2024, 4, 20)]
    part_two = challenger[challenger["date"] >= PART_TWO[0]]
    assert set(part_one["model_version"]) == {first_shadow}
    assert set(part_two["model_version"]) == {second_shadow}
    assert _reloads(engine, "challenger") == [first_shadow, second_shadow]
    # the challenger's rows are the same scoring of the same features, bit for bit
    np.testing.assert_array_equal(part_two["probability"].to_numpy(), _offline(cfg, engine, part_two))
    assert not np.array_equal(part_two["probability"].to_numpy(),
                              production[production["date"] >= PART_TWO[0]]["probability"].to_numpy())

    outcomes = database.read_frame(engine, "prediction_outcomes")
    assert set(outcomes["role"]) == {"production", "challenger"}
    for role, scored in (("production", production), ("challenger", challenger)):
        resolved = outcomes[outcomes["role"] == role].merge(scored, on=KEY, suffixes=("", "_scored"))
        assert len(resolved) > 500
        assert (resolved["model_version"] == resolved["model_version_scored"]).all()
        assert (resolved["probability"] == resolved["probability_scored"]).all()
        assert (resolved["correct"] == (resolved["label"] == resolved["actual"])).all()
