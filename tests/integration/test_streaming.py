"""The streaming job against real Kafka, Spark, MLflow and PostgreSQL, on the real shipped bars.

One topic of real bars (55 instruments, 2023-10 .. 2024-12, with hostile records mixed in) is
read by several independent runs of the job, each with its own checkpoint and database:
the reference bounded run, a run killed -9 three times, a supervised run through a PostgreSQL
restart and a Kafka broker restart, and a run on a standalone cluster. The dashboard is then
drawn in Debian's Chromium on the reference run's database, through the read-only role.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import expect

from dse_platform.config import Settings
from dse_platform.contracts.records import MAX_DEADLETTER_RAW_BYTES
from dse_platform.data import store
from dse_platform.model import features, gate, registry, training
from dse_platform.runtime import health, supervisor
from dse_platform.serving import database
from dse_platform.streams import kafka_io, replay
from tests.support.browser import TIMEOUT_MS
from tests.support.dashboard import PAGES, dashboard, drawn, reader_url, shot
from tests.support.platform import DSE, free_port, fresh_database, settings_for, wait_for
from tests.support.streaming import bounded_run, count, job_env, tables

pytestmark = [pytest.mark.services, pytest.mark.slow]

START, END = dt.date(2023, 10, 1), dt.date(2024, 12, 31)
ID_COLUMNS = ["symbol", "date"]


@pytest.fixture(scope="module")
def symbols(shipped_store) -> list[str]:
    _, target = shipped_store
    bars = store.read_bars(target, start=START, end=END, columns=["symbol", "date"])
    counts = bars.groupby("symbol").size()
    return sorted(counts[counts > 250].index)[::5][:55]


@pytest.fixture(scope="module")
def served(platform, shipped_store, symbols) -> Settings:
    """A model name with two trained versions; version 1 is production."""
    _, target = shipped_store
    cfg = platform.model_copy(update={"store_dir_override": target, "model_name": f"stream-{uuid.uuid4().hex[:8]}",
                                      "train_folds": 3, "train_test_sessions": 60})
    first = training.train(cfg, symbols=symbols, cutoff=dt.date(2023, 6, 30))
    training.train(cfg, symbols=symbols, cutoff=dt.date(2022, 12, 31))
    gate.promote(cfg, first.version, force=True)
    return cfg


def hostile_records() -> list[tuple[bytes | None, str]]:
    """(value, expected reason): at least 12 kinds of bad records."""
    good = {"symbol": "ZZBAD", "date": "2024-03-03", "open": 10.0, "high": 11.0, "low": 9.5, "close": 10.5,
            "volume": 100.0, "trades": 5, "value_mn": 0.1, "source": "replay", "produced_at": 1}

    def bar(**change):
        return json.dumps({**good, **change}).encode()

    return [
        (b"{not json", "invalid_json"),
        (bar(close="10.5"), "bad_number"),
        (json.dumps({k: v for k, v in good.items() if k != "close"}).encode(), "missing_field"),
        (b'{"symbol": "ZZBAD", "date": "2024-03-03", "open": NaN, "high": 1, "low": 1, "close": 1}', "invalid_json"),
        (b'{"symbol": "ZZBAD", "date": "2024-03-03", "open": 1, "high": Infinity, "low": 1, "close": 1}',
         "invalid_json"),
        (bar(low=-1.0), "non_positive_price"),
        (bar(close=0), "non_positive_price"),
        (bar(high=8.0), "high_below_low"),
        (bar(date="2091-01-01"), "future_date"),
        (bar(schema_version=2), "unknown_schema_version"),
        (b"", "empty_value"),
        (b"x" * 1_000_000, "too_large"),
        (b"\xff\xfe\x00bar", "not_utf8"),
        (bar(date="24/03/2024"), "bad_date"),
        (bar(symbol=42), "bad_symbol"),
        (b"[1, 2, 3]", "not_an_object"),
    ]


def _sent_again(bars: pd.DataFrame) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """A bar encoded as replay does with a new stamp, and a correction of it (another volume)."""
    identical = replay.encode_day(bars, 2)[0]
    different = replay.encode_day(bars.assign(volume=bars["volume"].fillna(0) + 1), 2)[0]
    return identical, different


@pytest.fixture(scope="module")
def topic(platform, shipped_store, symbols) -> dict:
    """Bars of the symbols replayed into a fresh topic, hostile records, re-sent bars and corrections mixed in."""
    _, target = shipped_store
    name = f"bars-{uuid.uuid4().hex[:8]}"
    cfg = platform.model_copy(update={"store_dir_override": target, "bars_topic": name,
                                      "ticks_topic": f"ticks-{name}"})
    kafka_io.ensure_topics(cfg, [cfg.bars_topic, cfg.ticks_topic])
    half = dt.date(2024, 5, 1)
    replay.replay(cfg, START, half, symbols, progress=False, echo=lambda _: None)
    prod = kafka_io.producer(cfg, max_request_size=2_000_000)
    bad = hostile_records()
    # the last bar replayed so far of the first instrument (in its window) and the first of the second (older
    # than its window: the sink compares it with the stored bar), each sent again as is and corrected
    last = replay.load_bars(cfg, START, half, symbols[:1]).tail(1)
    oldest = replay.load_bars(cfg, START, half, symbols[1:2]).head(1)
    (in_window, in_window_fix), (late, late_fix) = _sent_again(last), _sent_again(oldest)
    corrections = [(in_window_fix[1], "duplicate"), (late_fix[1], "duplicate")]
    futures = [prod.send(name, key=f"bad-{i}", value=value) for i, (value, _) in enumerate(bad)]
    resent = [prod.send(name, key=key, value=value) for key, value in (in_window, late)]
    futures += [*resent, *(prod.send(name, key=key, value=value) for key, value in (in_window_fix, late_fix))]
    kafka_io.flush_or_fail(prod, futures)
    prod.close()
    replay.replay(cfg, half + dt.timedelta(days=1), END, symbols, progress=False, echo=lambda _: None)
    return {"cfg": cfg, "bad": [*bad, *corrections],
            "resent": [(f.get().partition, f.get().offset) for f in resent]}


@pytest.fixture(scope="module")
def reference(platform, platform_env, served, topic) -> dict:
    """One uninterrupted bounded run over the whole topic."""
    url = fresh_database(platform)
    env = job_env(platform_env, served, topic, DSE_DB_URL=url)
    started = time.monotonic()
    proc = bounded_run(env)
    return {"url": url, "tables": tables(url), "log": proc.stderr, "seconds": time.monotonic() - started,
            "env": env}


def test_features_and_probabilities_equal_the_offline_ones(reference, served, symbols):
    got = reference["tables"]["features"]
    bars = features.drop_synthetic(store.read_bars(served.store_dir, end=END, symbols=symbols))
    bars = bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    offline = pd.concat([bars[ID_COLUMNS], features.compute(bars)], axis=1)
    # the stream saw bars from START on: its first full window ends at the LOOKBACK-th replayed bar
    in_range = offline[offline["date"] >= START].copy()
    in_range["n"] = in_range.groupby("symbol").cumcount()
    expected = in_range[(in_range["n"] >= features.LOOKBACK - 1) & in_range["valid"]]
    assert expected["symbol"].nunique() >= 50
    assert (expected["date"].max() - expected["date"].min()).days >= 365
    merged = expected.merge(got, on=ID_COLUMNS, how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][ID_COLUMNS].head()
    streamed = features.decode(merged["values"]).to_numpy()
    assert np.abs(streamed - merged[features.FEATURE_NAMES].to_numpy(float)).max() <= 1e-9

    ref = registry.production_ref(served)
    model = registry.load(served, ref)
    p_offline = model.predict_proba(merged[features.FEATURE_NAMES])[:, 1]
    preds = merged[ID_COLUMNS].merge(reference["tables"]["predictions"], on=ID_COLUMNS, how="left")
    assert preds["probability"].notna().all()
    assert np.abs(preds["probability"].to_numpy() - p_offline).max() <= 1e-9
    assert set(preds["model_version"]) == {ref.version}


def test_every_hostile_record_is_a_dead_letter_with_its_reason(reference, topic):
    dead = reference["tables"]["dead_letters"]
    ours = dead[dead["topic"] == topic["cfg"].bars_topic]
    expected = sorted(reason for _, reason in topic["bad"])
    assert sorted(ours["reason"]) == expected
    assert len(set(reason for _, reason in topic["bad"])) >= 12
    assert "ZZBAD" not in set(reference["tables"]["bars"]["symbol"])
    engine = database.engine(Settings(_env_file=None, db_url=reference["url"]))
    raw = database.read_frame(engine, "dead_letters")
    kept = {(bytes(v), int(size)) for v, size in zip(raw["raw"], raw["raw_size"], strict=True) if v is not None}
    assert kept >= {(v[:MAX_DEADLETTER_RAW_BYTES], len(v)) for v, _ in topic["bad"] if v}


def test_a_bar_sent_again_unchanged_is_counted_resent_not_a_dead_letter(reference, topic):
    dead = reference["tables"]["dead_letters"]
    ours = dead[dead["topic"] == topic["cfg"].bars_topic]
    assert len(topic["resent"]) == 2
    assert not set(topic["resent"]) & set(zip(ours["partition"], ours["offset"], strict=True))


def test_outcomes_resolve_against_the_next_session(reference, served):
    out = reference["tables"]["prediction_outcomes"]
    calendar = store.read_calendar(served.store_dir)
    assert len(out) > 1000
    sample = out.sample(200, random_state=1)
    assert all(calendar.next_session(d) == n for d, n in zip(sample["date"], sample["next_date"], strict=True))
    bars = reference["tables"]["bars"].set_index(ID_COLUMNS)["close"]
    for row in sample.itertuples():
        assert row.actual == int(bars[(row.symbol, row.next_date)] > bars[(row.symbol, row.date)])
    assert (out["correct"] == (out.merge(reference["tables"]["predictions"], on=ID_COLUMNS)["label"]
                               == out["actual"])).all()


def test_the_dashboard_draws_every_page_from_the_run(platform, reference, topic, ui_page, tmp_path):
    """Every page, as the read-only role, on what the bounded run wrote: the market of its last session, an
    instrument found by a search, monitoring's live table, the hostile records' dead letters with their samples.

    DSE_MONITOR_REFERENCE_SESSIONS=60: the drift panel recomputes its reference features from the bar store, and
    60 sessions are enough to draw it (the default is tested by the monitoring tests).
    """
    env = reference["env"]
    with dashboard(tmp_path, reference["url"], DSE_DASHBOARD_DB_URL=reader_url(platform, reference["url"]),
                   DSE_STORE_DIR=env["DSE_STORE_DIR"], DSE_STREAM_CHECKPOINT=env["DSE_STREAM_CHECKPOINT"],
                   DSE_MODEL_NAME=env["DSE_MODEL_NAME"], DSE_MONITOR_REFERENCE_SESSIONS="60") as url:
        for title, path in PAGES.items():
            ui_page.goto(f"{url}/{path}")
            drawn(ui_page, title)
            shot(ui_page, f"stream-{title.lower()}")
        symbol = reference["tables"]["predictions"]["symbol"].iloc[0]
        ui_page.goto(f"{url}/instrument")
        box = ui_page.get_by_role("textbox", name="Trading code")
        box.fill(symbol.lower())
        box.press("Enter")
        expect(ui_page.get_by_text(f"{symbol}: daily bars")).to_be_visible(timeout=TIMEOUT_MS)
        expect(ui_page.get_by_text("Model probability of an up move")).to_be_visible(timeout=TIMEOUT_MS)
        drawn(ui_page, "Instrument")
        ui_page.goto(f"{url}/model")
        drawn(ui_page, "Model")
        expect(ui_page.get_by_text(re.compile("The per-date AUC is the gate's metric"))).to_be_visible()
        ui_page.goto(f"{url}/pipeline")
        drawn(ui_page, "Pipeline")
        ui_page.get_by_label("Samples of").click()
        reason = sorted(reason for _, reason in topic["bad"])[0]
        ui_page.get_by_role("option", name=reason).first.click()
        drawn(ui_page, "Pipeline")
        shot(ui_page, f"stream-dead-letters-{reason}")


def test_kill_9_three_times_then_resume_gives_identical_tables(platform, platform_env, served, topic, reference):
    url = fresh_database(platform)
    env = job_env(platform_env, served, topic, DSE_DB_URL=url, DSE_STREAM_MAX_OFFSETS="1500")
    total = len(reference["tables"]["predictions"])
    for fraction in (0.2, 0.5, 0.8):
        proc = subprocess.Popen([DSE, "stream"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            wait_for(lambda f=fraction: count(url, "predictions") >= f * total, 600,
                     f"{fraction:.0%} of the predictions")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert count(url, "predictions") < total
    bounded_run(env)
    got = tables(url)
    for name in ("predictions", "prediction_outcomes", "bars", "dead_letters"):
        pd.testing.assert_frame_equal(got[name], reference["tables"][name], check_exact=True, obj=name)


def _restart(platform: Settings, name: str, check) -> None:
    """Stop a service of the session's platform, keep it down a few seconds, start it, wait until it is healthy."""
    server = supervisor.rpc(platform).supervisor
    server.stopProcess(name)
    try:
        wait_for(lambda: not check(platform)[0], 60, f"{name} to stop answering")
        time.sleep(5)  # an outage, not a blip: the job's writes or fetches fail meanwhile
    finally:
        if server.getProcessInfo(name)["statename"] != "RUNNING":
            server.startProcess(name)
        wait_for(lambda: check(platform)[0], 180, f"{name} to answer again", every_s=1)


def test_postgres_then_kafka_restarted_under_the_supervised_job_lose_and_duplicate_nothing(
        platform, platform_env, served, topic, reference):
    """The job as `dse stream --background` runs it: supervisor restarts it when an outage outlasts its retries."""
    url = fresh_database(platform)
    env = job_env(platform_env, served, topic, DSE_DB_URL=url, DSE_STREAM_MAX_OFFSETS="1500")
    overrides = {k: v for k, v in env.items() if k.startswith("DSE_") and platform_env.get(k) != v}
    job = settings_for(env)
    total = len(reference["tables"]["predictions"])
    server = supervisor.rpc(platform).supervisor
    supervisor.start_program(job, "stream", overrides)
    try:
        wait_for(lambda: count(url, "predictions") >= 0.3 * total, 600, "30% of the predictions")
        _restart(platform, "postgres", health.database_health)
        wait_for(lambda: count(url, "predictions") >= 0.6 * total, 600, "60% of the predictions")
        _restart(platform, "kafka", health.kafka_health)
        wait_for(lambda: count(url, "predictions") >= total, 900, "every prediction after both restarts")
        assert server.getProcessInfo("stream")["statename"] == "RUNNING", supervisor.log_tail(job, "stream", 40)
    finally:
        if server.getProcessInfo("stream")["statename"] in supervisor.RUNNING_STATES:
            server.stopProcess("stream")
    got = tables(url)
    for name in ("predictions", "prediction_outcomes", "bars", "dead_letters"):
        pd.testing.assert_frame_equal(got[name], reference["tables"][name], check_exact=True, obj=name)


def test_standalone_cluster_gives_the_same_predictions(platform, platform_env, served, topic, reference, tmp_path):
    """A master and two workers from PySpark's own launch classes, on loopback."""
    spark_class = str(Path(sys.executable).parent / "spark-class")
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    commands = {"master": ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                           "--webui-port", str(free_port())]}
    for n in range(2):
        commands[f"worker{n}"] = ["org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                                  "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()),
                                  "--work-dir", str(tmp_path / f"work{n}")]
    with contextlib.ExitStack() as stack:
        procs = []
        for name, args in commands.items():
            log = stack.enter_context(open(tmp_path / f"{name}.log", "w"))
            procs.append(subprocess.Popen([spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT))
        try:
            master_log = tmp_path / "master.log"
            wait_for(lambda: master_log.read_text().count("Registering worker") >= 2, 120,
                     "two workers registered with the master")
            url = fresh_database(platform)
            bounded_run(job_env(platform_env, served, topic, DSE_DB_URL=url, DSE_SPARK_MASTER=master_url))
            assert "Registering app dse-stream-predict" in master_log.read_text()
            got = tables(url)
            for name in ("predictions", "prediction_outcomes", "dead_letters"):
                pd.testing.assert_frame_equal(got[name], reference["tables"][name], check_exact=True, obj=name)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)


def test_hot_reload_switches_versions_without_a_restart(platform, platform_env, served, shipped_store, symbols):
    _, target = shipped_store
    name = f"bars-{uuid.uuid4().hex[:8]}"
    cfg = platform.model_copy(update={"store_dir_override": target, "bars_topic": name,
                                      "ticks_topic": f"ticks-{name}"})
    kafka_io.ensure_topics(cfg, [cfg.bars_topic, cfg.ticks_topic])
    url = fresh_database(platform)
    env = job_env(platform_env, served, {"cfg": cfg}, DSE_DB_URL=url)
    client = MlflowClient(served.tracking_uri)
    before = client.get_model_version_by_alias(served.model_name, "production").version
    after = "2" if before == "1" else "1"
    log = (Path(platform_env["DSE_HOME"]) / f"hot-reload-{name}.log").open("w")
    proc = subprocess.Popen([DSE, "stream"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    engine = database.engine(Settings(_env_file=None, db_url=url))
    try:
        replay.replay(cfg, dt.date(2024, 1, 1), dt.date(2024, 4, 30), symbols[:20], progress=False,
                      echo=lambda _: None)
        wait_for(lambda: count(url, "predictions") > 0 and database.read_frame(
            engine, "predictions")["date"].max() >= dt.date(2024, 4, 25), 400, "predictions of part one")
        gate.promote(served, after, force=True)
        wait_for(lambda: ((e := database.read_frame(engine, "model_events"))["event"].eq("reloaded")
                          & e["version"].eq(after)).any(), 30, "the job to reload the promoted version")
        replay.replay(cfg, dt.date(2024, 5, 1), dt.date(2024, 6, 30), symbols[:20], progress=False,
                      echo=lambda _: None)
        wait_for(lambda: database.read_frame(engine, "predictions")["date"].max() >= dt.date(2024, 6, 25), 400,
                 "predictions of part two")
        assert proc.poll() is None, "the job must not restart"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        log.close()
        if registry.production_ref(served).version != before:
            gate.promote(served, before, force=True)
    preds = database.read_frame(engine, "predictions")
    part_one = preds[preds["date"] <= dt.date(2024, 4, 30)]
    part_two = preds[preds["date"] >= dt.date(2024, 5, 1)]
    assert set(part_one["model_version"]) == {before}
    assert set(part_two["model_version"]) == {after}
