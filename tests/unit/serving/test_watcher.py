"""The model watcher outlives any fault, backs off and resets; the local model cache saves, prunes and serves."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy.exc import OperationalError

import mlflow
from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.model import cache, features
from dse_platform.model.registry import ModelRef
from dse_platform.serving import database
from dse_platform.serving.watcher import ModelWatcher
from tests.support.platform import wait_for

NAME = "dse-direction"


def _saved_model(folder: Path, columns: list[str], seed: int) -> Path:
    """A tiny fitted pipeline saved as training logs it (skops, signature), in a local folder."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(40, len(columns))), columns=columns)
    y = (X.iloc[:, 0] > 0).astype(int)
    model = Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression())]).fit(X, y)
    mlflow.sklearn.save_model(model, str(folder), serialization_format="skops", pip_requirements=[],
                              signature=infer_signature(X.head(3), model.predict_proba(X.head(3))))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("models")
    return {"good": _saved_model(base / "good", features.FEATURE_NAMES, 1),
            "other": _saved_model(base / "other", features.FEATURE_NAMES, 2),
            "bad_signature": _saved_model(base / "bad", ["close", "volume"], 3)}


@pytest.fixture
def settings(monkeypatch, tmp_path) -> Settings:
    for key in [k for k in os.environ if k.startswith("DSE_")]:
        monkeypatch.delenv(key)
    return Settings(_env_file=None, home=tmp_path / "var", db_url=f"sqlite:///{tmp_path / 'serving.db'}",
                    model_name=NAME, stream_model_poll_s=1.0)


@pytest.fixture
def engine(settings):
    eng = database.engine(settings)
    database.migrate(eng)
    return eng


def ref(version: str, feature_version: str | None = features.FEATURE_VERSION) -> ModelRef:
    return ModelRef(NAME, version, f"run-{version}", feature_version, "alias")


class FakeRegistry:
    """The alias and the artifact store, each of which can be made to fail."""

    def __init__(self, models: dict[str, Path], alias: ModelRef | None = None) -> None:
        self.models, self.alias = models, alias
        self.lookup_error: Exception | None = None
        self.fetch_error: Exception | None = None
        self.lookups = self.fetches = 0
        self.folder_of = {"1": "good", "2": "other"}

    def lookup(self) -> ModelRef | None:
        self.lookups += 1
        if self.lookup_error:
            raise self.lookup_error
        return self.alias

    def fetch(self, ref: ModelRef, dst: Path) -> Path:
        self.fetches += 1
        if self.fetch_error:
            raise self.fetch_error
        return Path(shutil.copytree(self.models[self.folder_of.get(ref.version, "good")], dst / "model"))


def events(engine, name: str | None = None) -> pd.DataFrame:
    frame = database.read_frame(engine, "model_events").sort_values("id")
    return frame if name is None else frame[frame["event"] == name]


def test_errors_of_any_type_keep_the_model_and_record_one_event_per_outage(settings, engine, models):
    fake = FakeRegistry(models, ref("1"))
    watcher = ModelWatcher(settings, engine, fake.lookup, fake.fetch)
    watcher.poll()
    assert watcher.current.version == "1"
    fake.lookup_error = MlflowException("RESOURCE_EXHAUSTED: database is locked")
    watcher.poll()
    for error in (OSError("connection refused"), RuntimeError("boom"), PlatformError("registry down", "start it")):
        fake.lookup_error = error
        watcher.poll()
    fake.lookup_error, fake.alias, fake.fetch_error = None, ref("2"), ConnectionError("artifact store down")
    watcher.poll()
    assert watcher.current.version == "1" and watcher.failures == 5
    outages = events(engine, "registry_unreachable")
    assert len(outages) == 1
    assert outages["version"].tolist() == ["1"]
    assert "MlflowException" in json.loads(outages["details"].iloc[0])["error"]

    fake.fetch_error = None
    watcher.poll()
    assert watcher.current.version == "2" and watcher.failures == 0
    reloaded = events(engine, "reloaded")
    assert reloaded["version"].tolist() == ["1", "2"] and reloaded["previous_version"].tolist()[-1] == "1"
    fake.lookup_error = TimeoutError("second outage")
    watcher.poll()
    watcher.poll()
    assert len(events(engine, "registry_unreachable")) == 2
    assert watcher.current.version == "2"


def test_the_thread_survives_failures_and_follows_the_alias_again(settings, engine, models):
    fast = settings.model_copy(update={"stream_model_poll_s": 0.02})
    fake = FakeRegistry(models)
    fake.lookup_error = ValueError("not json")
    watcher = ModelWatcher(fast, engine, fake.lookup, fake.fetch, max_backoff_s=0.1).start()
    try:
        wait_for(lambda: fake.lookups >= 5, 10, "five failed polls", every_s=0.02)
        assert watcher.alive and watcher.current is None
        fake.lookup_error, fake.alias = None, ref("1")
        wait_for(lambda: watcher.current is not None and not watcher.failures, 10, "the watcher to load version 1",
                 every_s=0.02)
    finally:
        watcher.stop()
    assert watcher.current.version == "1" and watcher.failures == 0
    assert len(events(engine, "registry_unreachable")) == 1


def test_backoff_grows_to_the_cap_then_resets_after_a_success(settings, engine, models):
    fake = FakeRegistry(models, ref("1"))
    watcher = ModelWatcher(settings, engine, fake.lookup, fake.fetch, max_backoff_s=8)
    assert watcher.delay == 1.0
    fake.lookup_error = OSError("down")
    delays = []
    for _ in range(6):
        watcher.poll()
        delays.append(watcher.delay)
    assert delays == [1, 2, 4, 8, 8, 8]
    fake.lookup_error = None
    watcher.poll()
    assert watcher.delay == 1.0 and watcher.current.version == "1"


def test_a_failing_event_write_is_logged_and_recorded_when_the_database_answers(settings, engine, models,
                                                                                   monkeypatch, caplog):
    fake = FakeRegistry(models)
    fake.lookup_error = OSError("down")
    real = database.record_event
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        real(*args, **kwargs)

    monkeypatch.setattr(database, "record_event", flaky)
    watcher = ModelWatcher(settings, engine, fake.lookup, fake.fetch)
    with caplog.at_level(logging.ERROR, logger="dse.stream"):
        watcher.poll()
    assert "could not record model event registry_unreachable" in caplog.text
    assert events(engine, "registry_unreachable").empty
    watcher.poll()
    watcher.poll()
    assert calls == ["registry_unreachable", "registry_unreachable"]
    assert len(events(engine, "registry_unreachable")) == 1


def test_an_unfit_version_is_refused_once_and_not_fetched_again(settings, engine, models):
    fake = FakeRegistry(models, ref("3"))
    fake.folder_of["3"] = "bad_signature"
    watcher = ModelWatcher(settings, engine, fake.lookup, fake.fetch)
    watcher.poll()
    watcher.poll()
    assert watcher.current is None and fake.fetches == 1 and watcher.failures == 0
    rejected = events(engine, "rejected")
    assert rejected["version"].tolist() == ["3"] and "input signature" in rejected["details"].iloc[0]
    fake.alias = ref("1")
    watcher.poll()
    assert watcher.current.version == "1"


def test_a_cold_start_during_an_outage_scores_with_the_cached_model(settings, engine, models):
    fake = FakeRegistry(models, ref("2"))
    ModelWatcher(settings, engine, fake.lookup, fake.fetch).poll()
    fake.lookup_error = MlflowException("connection refused")
    cold = ModelWatcher(settings, engine, fake.lookup, fake.fetch)
    cold.poll()
    assert cold.current.version == "2"
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(5, len(features.FEATURE_NAMES))),
                     columns=features.FEATURE_NAMES)
    expected = mlflow.sklearn.load_model(str(models["other"])).predict_proba(X)
    np.testing.assert_array_equal(cold.current.model.predict_proba(X), expected)
    assert events(engine, "cached_model_loaded")["version"].tolist() == ["2"]

    fake.lookup_error, fake.alias = None, ref("1")
    cold.poll()
    assert cold.current.version == "1"
    last = events(engine).iloc[-1]
    assert (last["event"], last["version"], last["previous_version"]) == ("reloaded", "1", "2")


def test_a_cold_start_without_a_compatible_cache_serves_nothing_and_keeps_polling(settings, engine, models):
    cache.save(settings, ref("1", feature_version="0"), models["good"], "production")
    fake = FakeRegistry(models)
    fake.lookup_error = OSError("down")
    watcher = ModelWatcher(settings, engine, fake.lookup, fake.fetch)
    watcher.poll()
    assert watcher.current is None and events(engine, "cached_model_loaded").empty
    fake.lookup_error, fake.alias = None, ref("1")
    watcher.poll()
    assert watcher.current.version == "1"


def test_cache_keeps_the_two_most_recently_loaded_versions(settings, models):
    for version in ("3", "1", "2"):
        cache.save(settings, ref(version), models["good"], "production")
    folder = cache.model_dir(settings, NAME)
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2"]
    cache.save(settings, ref("1"), models["good"], "production")
    kept = cache.entries(settings, NAME)
    assert [e.version for e in kept] == ["1", "2"]
    meta = json.loads((folder / "1" / cache.META).read_text())
    assert meta.keys() == {"name", "version", "alias", "feature_version", "run_id", "loaded_at"}
    assert (meta["name"], meta["run_id"], meta["alias"]) == (NAME, "run-1", "production")
    assert (folder / "1" / "MLmodel").is_file() and not any(p.name.startswith(".") for p in folder.iterdir())


def test_newest_compatible_skips_other_feature_versions_and_unreadable_entries(settings, models, caplog):
    assert cache.newest_compatible(settings, NAME) is None
    cache.save(settings, ref("1"), models["good"], "production")
    cache.save(settings, ref("2", feature_version="0"), models["other"], "production")
    assert cache.newest_compatible(settings, NAME).version == "1"
    (cache.model_dir(settings, NAME) / "2" / cache.META).write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert [e.version for e in cache.entries(settings, NAME)] == ["1"]
    assert "unreadable model cache entry" in caplog.text


def test_a_cached_model_is_checked_like_a_registry_one(settings, models):
    good = cache.save(settings, ref("1"), models["good"], "production")
    assert isinstance(cache.load(good), Pipeline)
    wrong = cache.save(settings, ref("2"), models["bad_signature"], "production")
    with pytest.raises(PlatformError, match="input signature"):
        cache.load(wrong)
    stale = cache.save(settings, ref("1", feature_version="0"), models["good"], "production")
    with pytest.raises(PlatformError, match="feature version 0"):
        cache.load(stale)
