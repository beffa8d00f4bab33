"""The model watcher outlives any fault, backs off and resets; the local model cache saves, prunes and serves."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
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


def shifted(values):
    """A function of the model's author: skops stores a reference to it, which loading would import and call."""
    return values + 1


def _saved_model(folder: Path, columns: list[str], seed: int, serialization: str = "skops",
                 extra_step: bool = False) -> Path:
    """A tiny fitted pipeline saved as training logs it (skops, signature), in a local folder."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(40, len(columns))), columns=columns)
    y = (X.iloc[:, 0] > 0).astype(int)
    steps = [("scale", StandardScaler()), ("logreg", LogisticRegression())]
    model = Pipeline([("custom", FunctionTransformer(shifted))] * extra_step + steps).fit(X, y)
    mlflow.sklearn.save_model(model, str(folder), serialization_format=serialization, pip_requirements=[],
                              skops_trusted_types=[f"{__name__}.shifted"] if extra_step else None,
                              signature=infer_signature(X.head(3), model.predict_proba(X.head(3))))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("models")
    return {"good": _saved_model(base / "good", features.FEATURE_NAMES, 1),
            "other": _saved_model(base / "other", features.FEATURE_NAMES, 2),
            "bad_signature": _saved_model(base / "bad", ["close", "volume"], 3),
            "pickled": _saved_model(base / "pickled", features.FEATURE_NAMES, 4, serialization="cloudpickle"),
            "untrusted": _saved_model(base / "untrusted", features.FEATURE_NAMES, 5, extra_step=True),
            "truncated": _truncated(_saved_model(base / "truncated", features.FEATURE_NAMES, 6))}


def _truncated(folder: Path) -> Path:
    """A model whose skops file was cut short (an interrupted upload): not a readable zip any more."""
    file = folder / "model.skops"
    file.write_bytes(file.read_bytes()[:200])
    return folder


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
    assert meta.keys() == {"name", "version", "aliases", "feature_version", "run_id", "loaded_at"}
    assert (meta["name"], meta["run_id"], list(meta["aliases"])) == (NAME, "run-1", ["production"])
    assert (folder / "1" / "MLmodel").is_file() and not any(p.name.startswith(".") for p in folder.iterdir())


def test_newest_compatible_skips_other_feature_versions_and_unreadable_entries(settings, models, caplog):
    assert cache.newest_compatible(settings, NAME, "production") is None
    cache.save(settings, ref("1"), models["good"], "production")
    cache.save(settings, ref("2", feature_version="0"), models["other"], "production")
    assert cache.newest_compatible(settings, NAME, "production").version == "1"
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


# ---- two roles: production and the challenger scored in shadow ------------------------------------


def details(frame: pd.DataFrame) -> list[dict]:
    return [json.loads(d) for d in frame["details"]]


def test_each_role_follows_its_own_alias_and_names_itself_in_its_events(settings, engine, models):
    served, shadow = FakeRegistry(models, ref("1")), FakeRegistry(models, ref("2"))
    production = ModelWatcher(settings, engine, served.lookup, served.fetch)
    challenger = ModelWatcher(settings, engine, shadow.lookup, shadow.fetch, role="challenger")
    for watcher in (production, challenger):
        watcher.poll()
    assert (production.current.version, challenger.current.version) == ("1", "2")
    assert (production.alias, challenger.alias) == ("production", "challenger")
    shadow.alias = ref("3")
    shadow.folder_of["3"] = "good"
    for watcher in (production, challenger):
        watcher.poll()
    assert (production.current.version, challenger.current.version) == ("1", "3")
    reloaded = events(engine, "reloaded")
    assert list(zip(reloaded["version"], reloaded["previous_version"].fillna("-"),
                    [(d["role"], d["alias"]) for d in details(reloaded)], strict=True)) == [
        ("1", "-", ("production", "production")), ("2", "-", ("challenger", "challenger")),
        ("3", "2", ("challenger", "challenger"))]


def test_a_challenger_alias_never_set_is_quiet_and_one_removed_stops_the_shadow_once(settings, engine, models,
                                                                                       caplog):
    shadow = FakeRegistry(models)
    challenger = ModelWatcher(settings, engine, shadow.lookup, shadow.fetch, role="challenger")
    with caplog.at_level(logging.INFO, logger="dse.stream"):
        for _ in range(5):
            challenger.poll()
    assert challenger.current is None and challenger.failures == 0 and events(engine).empty
    assert caplog.text.count("no shadow scoring until the alias is set") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    shadow.alias = ref("2")
    challenger.poll()
    assert challenger.current.version == "2"
    shadow.alias = None
    for _ in range(3):
        challenger.poll()
    assert challenger.current is None
    unloaded = events(engine, "unloaded")
    assert unloaded["previous_version"].tolist() == ["2"] and details(unloaded)[0]["role"] == "challenger"


def test_production_keeps_serving_when_its_alias_disappears(settings, engine, models, caplog):
    served = FakeRegistry(models, ref("1"))
    production = ModelWatcher(settings, engine, served.lookup, served.fetch)
    production.poll()
    served.alias = None
    with caplog.at_level(logging.WARNING, logger="dse.stream"):
        production.poll()
        production.poll()
    assert production.current.version == "1" and events(engine, "unloaded").empty
    assert caplog.text.count("names no version: keeping version 1") == 1


def test_a_cold_start_during_an_outage_gives_each_role_its_own_cached_version(settings, engine, models):
    served, shadow = FakeRegistry(models, ref("1")), FakeRegistry(models, ref("2"))
    ModelWatcher(settings, engine, served.lookup, served.fetch).poll()
    ModelWatcher(settings, engine, shadow.lookup, shadow.fetch, role="challenger").poll()
    for fake in (served, shadow):
        fake.lookup_error = OSError("registry down")
    production = ModelWatcher(settings, engine, served.lookup, served.fetch)
    challenger = ModelWatcher(settings, engine, shadow.lookup, shadow.fetch, role="challenger")
    for watcher in (production, challenger):
        watcher.poll()
    assert (production.current.version, challenger.current.version) == ("1", "2")
    cached = events(engine, "cached_model_loaded")
    assert [(v, d["role"], d["alias"]) for v, d in zip(cached["version"], details(cached), strict=True)] == [
        ("1", "production", "production"), ("2", "challenger", "challenger")]
    outages = events(engine, "registry_unreachable")
    assert sorted(d["role"] for d in details(outages)) == ["challenger", "production"]


def test_a_busy_challenger_never_pushes_productions_cached_versions_out(settings, models):
    for version in ("1", "2"):
        cache.save(settings, ref(version), models["good"], "production")
    for version in ("3", "4", "5", "2"):
        cache.save(settings, ref(version), models["good"], "challenger")
    kept = {e.version: sorted(e.aliases) for e in cache.entries(settings, NAME)}
    assert kept == {"1": ["production"], "2": ["challenger", "production"], "5": ["challenger"]}
    assert cache.newest_compatible(settings, NAME, "production").version == "2"
    assert cache.newest_compatible(settings, NAME, "challenger").version == "2"
    cache.save(settings, ref("5"), models["good"], "challenger")
    assert cache.newest_compatible(settings, NAME, "challenger").version == "5"
    assert cache.newest_compatible(settings, NAME, "production").version == "2"


def test_a_cache_entry_written_before_the_challenger_existed_is_production_s(settings, models):
    entry = cache.save(settings, ref("1"), models["good"], "production")
    meta = json.loads((entry.path / cache.META).read_text())
    old = {**{k: v for k, v in meta.items() if k != "aliases"}, "alias": "production"}
    (entry.path / cache.META).write_text(json.dumps(old))
    assert cache.newest_compatible(settings, NAME, "production").version == "1"
    assert cache.newest_compatible(settings, NAME, "challenger") is None


class FakeClient:
    """The two MlflowClient calls a lookup makes: aliases set on versions, and legacy stages."""

    def __init__(self, aliases: dict[str, str], staged: str | None = None) -> None:
        self.aliases, self.staged = aliases, staged

    def version(self, number: str, stage: str = "None") -> SimpleNamespace:
        return SimpleNamespace(name=NAME, version=number, run_id=f"run-{number}", current_stage=stage,
                               tags={"feature_version": features.FEATURE_VERSION})

    def get_model_version_by_alias(self, name: str, alias: str):
        if alias not in self.aliases:
            raise MlflowException(f"Registered model alias {alias} not found.", error_code=INVALID_PARAMETER_VALUE)
        return self.version(self.aliases[alias])

    def search_model_versions(self, _: str) -> list:
        return [self.version(self.staged, "Production")] if self.staged else []


@pytest.mark.parametrize(("aliases", "staged", "expected"), [
    ({"production": "3", "challenger": "4"}, None, {"production": ("3", "alias"), "challenger": ("4", "alias")}),
    ({}, "2", {"production": ("2", "stage"), "challenger": None}),  # the legacy stage stands in for production only
    ({"challenger": "4"}, None, {"production": None, "challenger": ("4", "alias")}),
])
def test_the_default_lookup_asks_the_registry_for_the_role_s_alias(settings, engine, monkeypatch, aliases, staged,
                                                                    expected):
    from dse_platform.model import registry

    monkeypatch.setattr(registry, "connect", lambda _: FakeClient(aliases, staged))
    for role, want in expected.items():
        found = ModelWatcher(settings, engine, role=role)._lookup()
        assert (found and (found.version, found.found_by)) == want


def test_the_challenger_alias_comes_from_the_settings(settings, engine):
    renamed = settings.model_copy(update={"challenger_alias": "shadow"})
    assert ModelWatcher(renamed, engine, role="challenger").alias == "shadow"
    with pytest.raises(ValueError, match="role 'canary'"):
        ModelWatcher(settings, engine, role="canary")


@pytest.mark.parametrize(("folder", "reason"), [("pickled", "not skops"), ("untrusted", "does not trust"),
                                               ("truncated", "cannot be read")])
def test_a_pickled_or_untrusted_model_is_refused_and_the_last_good_one_keeps_scoring(settings, engine, models,
                                                                                    folder, reason):
    """Its MLmodel file declares what to trust (this one trusts its own function): the allowlist in code decides."""
    fake = FakeRegistry(models, ref("1"))
    watcher = ModelWatcher(settings, engine, fake.lookup, fake.fetch)
    watcher.poll()
    fake.alias, fake.folder_of["6"] = ref("6"), folder
    watcher.poll()
    assert watcher.current.version == "1"
    rejected = events(engine, "rejected")
    assert rejected["version"].tolist() == ["6"] and reason in rejected["details"].iloc[0]
