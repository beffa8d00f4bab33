"""Waiting for created topics to become visible, against a stand-in admin client (no broker)."""

from __future__ import annotations

import time

import pytest

from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.streams import kafka_io


class SlowAdmin:
    """Lists one more of the wanted topics on every call, as a broker propagating new topics does."""

    def __init__(self, topics: list[str]) -> None:
        self.topics, self.calls = topics, 0

    def list_topics(self) -> list[str]:
        self.calls += 1
        return ["other", *self.topics[: self.calls - 1]]


def test_wait_returns_once_every_topic_is_listed() -> None:
    admin = SlowAdmin(["a", "b"])
    kafka_io._wait_for_metadata(admin, ["a", "b"], timeout_s=5)
    assert admin.calls == 3


def test_wait_gives_up_after_the_timeout_naming_the_topics() -> None:
    admin = SlowAdmin([])
    started = time.monotonic()
    with pytest.raises(PlatformError, match=r"topics \['a'\] not visible after 0.5s") as info:
        kafka_io._wait_for_metadata(admin, ["a"], timeout_s=0.5)
    assert 0.5 <= time.monotonic() - started < 2 and admin.calls >= 2
    assert info.value.fix == "check the broker with `dse status`"


def test_topics_of_three_brokers_get_three_replicas_and_a_majority_in_sync() -> None:
    settings = Settings(_env_file=None, kafka_brokers=3)
    assert settings.replication_factor == 3
    assert kafka_io.topic_configs(settings, settings.predictions_topic) == {"min.insync.replicas": "2"}
    assert kafka_io.topic_configs(settings, settings.bars_topic)["max.message.bytes"]
    single = Settings(_env_file=None)
    assert (single.replication_factor, single.min_insync_replicas) == (1, 1)


def test_more_in_sync_replicas_than_replicas_is_refused_naming_the_setting() -> None:
    settings = Settings(_env_file=None, kafka_brokers=3, topic_replication=2, topic_min_insync=3)
    with pytest.raises(PlatformError, match="DSE_TOPIC_MIN_INSYNC=3"):
        kafka_io.topic_configs(settings, settings.bars_topic)
