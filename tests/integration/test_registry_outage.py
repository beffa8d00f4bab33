"""The model watcher through a real MLflow outage: stopped and started again with the session's supervisor.

A running watcher keeps its model, records the outage once and follows the alias once MLflow is back;
a watcher started during the outage scores with the locally cached model, then switches when the
registry names another version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from dse_platform.config import Settings
from dse_platform.data import store
from dse_platform.model import cache, features, gate, scoring, training
from dse_platform.runtime.health import mlflow_health
from dse_platform.runtime.supervisor import rpc
from dse_platform.serving import database
from dse_platform.serving.watcher import ModelWatcher
from tests.support.platform import fresh_database, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(platform, shipped_store) -> tuple[Settings, list[str]]:
    """A fresh model name with two trained versions, version 1 production, polled every half second."""
    _, target = shipped_store
    counts = store.read_bars(target, columns=["symbol", "date"]).groupby("symbol").size()
    symbols = sorted(counts[counts > 250].index)[::10][:12]
    cfg = platform.model_copy(update={"store_dir_override": target, "model_name": f"outage-{uuid.uuid4().hex[:8]}",
                                      "train_folds": 3, "train_test_sessions": 60, "stream_model_poll_s": 0.5})
    first = training.train(cfg, symbols=symbols, cutoff=dt.date(2023, 6, 30))
    training.train(cfg, symbols=symbols, cutoff=dt.date(2022, 12, 31))
    gate.promote(cfg, first.version, force=True)
    return cfg, symbols


@contextlib.contextmanager
def mlflow_stopped(platform: Settings) -> Iterator[None]:
    """MLflow stopped through supervisor, and always started again (other tests need it)."""
    server = rpc(platform).supervisor
    server.stopProcess("mlflow")
    try:
        wait_for(lambda: not mlflow_health(platform)[0], 60, "MLflow to stop answering")
        yield
    finally:
        if server.getProcessInfo("mlflow")["statename"] != "RUNNING":
            server.startProcess("mlflow")
        wait_for(lambda: mlflow_health(platform)[0], 180, "MLflow to answer again", every_s=1)


def _events(engine, event: str, until: dt.datetime | None = None) -> list[tuple[str | None, str | None]]:
    """(version, previous_version) of each ``event``, oldest first, optionally only those up to ``until``."""
    frame = database.read_frame(engine, "model_events").sort_values("id")
    chosen = frame["event"] == event
    if until is not None:
        chosen &= frame["at"] <= until
    return list(frame.loc[chosen, ["version", "previous_version"]].itertuples(index=False, name=None))


def test_watchers_survive_an_mlflow_outage_and_a_cold_start_scores_from_the_cache(platform, served):
    cfg, symbols = served
    running_cfg = cfg.model_copy(update={"db_url": fresh_database(platform)})
    cold_cfg = cfg.model_copy(update={"db_url": fresh_database(platform)})
    running_db, cold_db = database.engine(running_cfg), database.engine(cold_cfg)
    bars = features.drop_synthetic(store.read_bars(cfg.store_dir, symbols=symbols[:3]))
    computed = features.compute(bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True))
    X = computed.loc[computed["valid"], features.FEATURE_NAMES]

    running = ModelWatcher(running_cfg, running_db, max_backoff_s=2).start()
    cold = None
    try:
        assert running.current.version == "1"
        assert [e.version for e in cache.entries(cfg, cfg.model_name)] == ["1"]
        with mlflow_stopped(platform):
            wait_for(lambda: running.failures >= 3, 60, "three failed polls of the running watcher")
            assert running.alive and running.current.version == "1"
            cold = ModelWatcher(cold_cfg, cold_db, max_backoff_s=2).start()
            assert cold.current is not None and cold.current.version == "1", "the cold start must use the cache"
            np.testing.assert_array_equal(scoring.probabilities(cold.current.model, X),
                                          scoring.probabilities(running.current.model, X))
        # a loaded machine can make the fresh server miss a health check later: that is an outage of its own
        back = dt.datetime.now(dt.UTC)
        gate.promote(cfg, "2", force=True)
        for watcher in (running, cold):
            wait_for(lambda w=watcher: w.current.version == "2" and not w.failures, 60,
                     "the watcher to follow the alias to version 2")
    finally:
        for watcher in (running, cold):
            if watcher is not None:
                watcher.stop()

    assert _events(running_db, "registry_unreachable", until=back) == [("1", None)]
    assert _events(running_db, "reloaded") == [("1", None), ("2", "1")]
    assert _events(cold_db, "registry_unreachable", until=back) == [(None, None)]
    assert _events(cold_db, "cached_model_loaded") == [("1", None)]
    assert _events(cold_db, "reloaded") == [("2", "1")]
    assert {e.version for e in cache.entries(cfg, cfg.model_name)} == {"1", "2"}
