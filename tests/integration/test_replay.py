"""Replay through the real Kafka broker: exactly once per key and in order; kill -9 then --resume leaves no gap."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
import uuid

import pytest
from kafka import KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.partitioner.default import murmur2

from dse_platform.config import PROJECT_DIR
from dse_platform.contracts.records import MAX_TOPIC_MESSAGE_BYTES
from dse_platform.data import store
from dse_platform.data.ingest import ingest
from dse_platform.errors import PlatformError
from dse_platform.streams import kafka_io
from dse_platform.streams.replay import checkpoint_path, replay
from tests.support.platform import DSE

pytestmark = [pytest.mark.services]
START, END = dt.date(2024, 1, 1), dt.date(2024, 2, 29)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """The shipped data of 60 instruments (keeps this module fast; the rules are the same)."""
    src = PROJECT_DIR / "data" / "dse-eod-2018-2025"
    files = sorted(src.glob("*.csv.gz"))[:60]
    target = tmp_path_factory.mktemp("replay") / "store"
    ingest(files, target, progress=False)
    return target


@pytest.fixture
def cfg(platform, small_store):
    return platform.model_copy(update={"bars_topic": f"bars-{uuid.uuid4().hex[:8]}",
                                       "store_dir_override": small_store})


def _consume(settings, expected: int, timeout_s: float = 60) -> list[dict]:
    consumer = KafkaConsumer(settings.bars_topic, bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=2000)
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for msg in consumer:
            record = json.loads(msg.value)
            assert msg.key.decode() == record["symbol"]
            out.append(record | {"_partition": msg.partition, "_offset": msg.offset})
        if len(out) >= expected:
            break
    consumer.close()
    return out


def _expected(settings) -> set[tuple[str, str]]:
    bars = store.read_bars(settings.store_dir, START, END)
    bars = bars[~bars["quality_flags"].str.contains("synthetic")]
    return {(s, str(d)) for s, d in zip(bars["symbol"], bars["date"], strict=True)}


def test_every_bar_arrives_once_in_date_order_per_key(cfg):
    result = replay(cfg, START, END, progress=False)
    expected = _expected(cfg)
    assert result.bars == len(expected)
    got = _consume(cfg, len(expected))
    pairs = [(r["symbol"], r["date"]) for r in got]
    assert len(pairs) == len(set(pairs)) and set(pairs) == expected
    by_key: dict[str, list] = {}
    for r in sorted(got, key=lambda r: (r["_partition"], r["_offset"])):
        by_key.setdefault(r["symbol"], []).append(r["date"])
    assert all(dates == sorted(dates) for dates in by_key.values())
    # the key -> partition mapping is the Java client's (murmur2), the same kafka-python uses
    parts = sorted({r["_partition"] for r in got})
    n = cfg.topic_partitions
    assert len(parts) > 1
    assert all(r["_partition"] == (murmur2(r["symbol"].encode()) & 0x7FFFFFFF) % n for r in got)
    sample = got[0]
    assert sample["source"] == "replay" and sample["produced_at"] > 1_700_000_000_000
    assert set(sample) >= {"open", "high", "low", "close", "volume", "trades", "value_mn"}


def test_kill_then_resume_gives_the_same_set_with_no_gap(cfg, platform_env):
    ckpt = checkpoint_path(cfg, START, END, None)
    env = {**platform_env, "DSE_BARS_TOPIC": cfg.bars_topic, "DSE_STORE_DIR": str(cfg.store_dir)}
    args = [DSE, "replay", "--from", str(START), "--to", str(END), "--speed", "8"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ckpt.exists() and json.loads(ckpt.read_text())["bars_sent"] > 200:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("replay made no progress")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    stopped_after = json.loads(ckpt.read_text())["last_acked_day"]
    resumed = subprocess.run([*args[:-2], "--speed", "max", "--resume"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after {stopped_after}" in resumed.stdout
    expected = _expected(cfg)
    got = _consume(cfg, len(expected))
    pairs = [(r["symbol"], r["date"]) for r in got]
    assert set(pairs) == expected  # no gap
    repeated = {p for p in pairs if pairs.count(p) > 1}
    # a paced replay acknowledges day by day: at most the day in flight when it died is sent twice
    assert len({d for _, d in repeated}) <= 1


def test_bad_replay_arguments_are_clear(cfg):
    with pytest.raises(PlatformError, match="after --to"):
        replay(cfg, END, START, progress=False)
    with pytest.raises(PlatformError, match="--speed must be positive"):
        replay(cfg, START, END, speed=-1, progress=False)
    with pytest.raises(PlatformError, match="no bars for NOSUCH"):
        replay(cfg, START, END, symbols=["NOSUCH"], progress=False)


def test_bar_and_tick_topics_bound_the_record_size(cfg):
    ticks = cfg.model_copy(update={"ticks_topic": f"ticks-{uuid.uuid4().hex[:8]}"})
    kafka_io.ensure_topics(ticks, [ticks.bars_topic, ticks.ticks_topic])
    admin = KafkaAdminClient(bootstrap_servers=cfg.bootstrap_servers)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t)
                                            for t in (ticks.bars_topic, ticks.ticks_topic)])
    finally:
        admin.close()
    for topic in (ticks.bars_topic, ticks.ticks_topic):
        assert described["topic"][topic]["max.message.bytes"]["value"] == str(MAX_TOPIC_MESSAGE_BYTES), described
