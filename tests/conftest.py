"""Shared fixtures: real services started once per test session, in a private home and on free ports."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from dse_platform.config import PROJECT_DIR, Settings
from dse_platform.ingest import ingest
from tests.browser import chromium, new_page, screenshot

# "today" of the tests: fixed, so date rules (future dates) do not drift with the clock
TODAY = dt.date(2026, 11, 24)
DSE = str(Path(sys.executable).parent / "dse")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def platform_env_for(home: Path, **extra: str) -> dict[str, str]:
    """Environment for a private platform instance: its own var/ folder and free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSE_")}
    env.update({
        "DSE_HOME": str(home),
        "DSE_JARS_DIR": str(PROJECT_DIR / "var" / "jars"),
        "DSE_KAFKA_PORT": str(free_port()),
        "DSE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "DSE_MLFLOW_PORT": str(free_port()),
        "DSE_AIRFLOW_PORT": str(free_port()),
        "DSE_POSTGRES_PORT": str(free_port()),
        "DSE_DB_BACKEND": "postgres",
        "PYSPARK_PYTHON": sys.executable,
    })
    env.update(extra)
    return env


def settings_for(env: dict[str, str]) -> Settings:
    """The Settings object a `dse` process started with ``env`` sees."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings(_env_file=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_dse(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([DSE, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=PROJECT_DIR)


def service_home(tag: str) -> Path:
    """A fresh folder for a platform instance that the ``postgres`` user can traverse.

    pytest's own tmp folders are private to root (mode 700), and PostgreSQL refuses to run as root.
    """
    base = PROJECT_DIR / "var" / "test-homes"
    base.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=base))
    home.chmod(0o755)
    return home


@pytest.fixture
def home() -> Iterator[Path]:
    path = service_home("t")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def shipped_store(tmp_path_factory) -> tuple[dict, Path]:
    """The whole shipped data set ingested once per session (about 25 s): (quality report, store folder)."""
    target = tmp_path_factory.mktemp("store") / "store"
    result = ingest([PROJECT_DIR / "data"], target, today=TODAY, progress=False)
    return result.report, target


@pytest.fixture(scope="session")
def platform_env() -> Iterator[dict[str, str]]:
    """Kafka, MLflow, PostgreSQL and Airflow, started once for the whole session by `dse up`.

    Yields the environment `dse` ran with, so tests can start more `dse` processes against them.
    """
    env = platform_env_for(service_home("platform"))
    proc = run_dse(env, "up")
    if proc.returncode != 0:
        run_dse(env, "down")
        pytest.fail(f"dse up failed:\n{proc.stdout}\n{proc.stderr}")
    yield env
    run_dse(env, "down")
    shutil.rmtree(env["DSE_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def platform(platform_env) -> Settings:
    """The settings of the session's running platform."""
    return settings_for(platform_env)


@pytest.fixture
def ui_page(request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page in Debian's headless Chromium; a failing test leaves a screenshot of it."""
    failed_before = request.session.testsfailed
    with sync_playwright() as pw:
        browser = chromium(pw)
        try:
            page = new_page(browser)
            yield page
            if request.session.testsfailed > failed_before:
                screenshot(page, f"browser-harness/{request.node.name}-failed.png")
        finally:
            browser.close()
