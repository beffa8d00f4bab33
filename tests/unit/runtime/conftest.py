"""Settings in a private home, free of the caller's DSE_* variables, and a fake resolved jar set."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from dse_platform.config import Settings
from dse_platform.runtime.jars import MARKER, jar_set_dir, pom_digest


@pytest.fixture
def make_settings(monkeypatch, tmp_path) -> Callable[..., Settings]:
    for key in [k for k in os.environ if k.startswith("DSE_")]:
        monkeypatch.delenv(key)

    def make(**overrides) -> Settings:
        return Settings(_env_file=None, home=tmp_path / "var", **overrides)

    return make


@pytest.fixture
def fake_jars() -> Callable[[Settings], list[Path]]:
    """Writes a jar set as `dse jars` leaves it: the jars, then a marker holding the pom's digest."""

    def make(settings: Settings, name: str = "spark") -> list[Path]:
        folder = jar_set_dir(settings, name)
        folder.mkdir(parents=True)
        paths = [folder / "spark-sql-kafka.jar", folder / "kafka-clients.jar"]
        for path in paths:
            path.write_bytes(b"PK")
        (folder / MARKER).write_text(pom_digest(settings) + "\n")
        return paths

    return make
