"""Shared fixtures: real services started once per test session, in a private home and on free ports."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from dse_platform.config import PROJECT_DIR, Settings
from dse_platform.data.ingest import ingest
from dse_platform.model import registry
from tests.support.browser import chromium, new_page, screenshot
from tests.support.platform import TODAY, platform_env_for, run_dse, service_home, settings_for


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
    """The settings of the session's running platform.

    This process's MLflow client library is pointed at its server with its generated login, as every
    platform process points itself (registry.configure), so a test's own MlflowClient is let in.
    """
    settings = settings_for(platform_env)
    registry.configure(settings)
    return settings


@pytest.fixture
def ui_page(request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page in Debian's headless Chromium; a failing test leaves a screenshot of it.

    A test on the session platform gets its MLflow login for the server's basic-auth challenge.
    """
    failed_before = request.session.testsfailed
    login = request.getfixturevalue("platform").mlflow_credentials if "platform" in request.fixturenames else None
    with sync_playwright() as pw:
        browser = chromium(pw)
        try:
            page = new_page(browser, login=login)
            yield page
            if request.session.testsfailed > failed_before:
                screenshot(page, f"browser-harness/{request.node.name}-failed.png")
        finally:
            browser.close()
