"""The browser layer of the UI tests (tests/browser.py) against real pages.

Debian's Chromium loads a page over HTTP, and MLflow's alias editor moves an alias between
two registered versions on the session platform's MLflow server, checked through MLflow's
client. The Airflow helpers are exercised by the DAG tests.
"""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import Page, expect
from sklearn.linear_model import LogisticRegression

import mlflow
from dse_platform.config import Settings
from dse_platform.model import registry
from tests.support.browser import mlflow_screenshot, mlflow_set_alias, screenshot


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server for one small page; yields its base URL."""
    (tmp_path / "index.html").write_text(
        "<!doctype html><title>DSE probe</title><main><h1>Dhaka Stock Exchange</h1>"
        "<button onclick=\"this.textContent='clicked'\">Press</button></main>")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_chromium_loads_a_page(ui_page: Page, static_site: str) -> None:
    ui_page.goto(f"{static_site}/index.html")
    expect(ui_page).to_have_title("DSE probe")
    expect(ui_page.get_by_role("heading", name="Dhaka Stock Exchange")).to_be_visible()
    ui_page.get_by_role("button", name="Press").click()
    expect(ui_page.get_by_role("button", name="clicked")).to_be_visible()
    shot = screenshot(ui_page, "browser-harness/static-page.png")
    assert shot.stat().st_size > 1000


def _register_two_versions(tracking_uri: str, name: str) -> None:
    """Log and register two tiny LogisticRegression models as versions 1 and 2 of ``name``."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"browser-harness-{name}")
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    for c in (1.0, 0.5):
        with mlflow.start_run():
            # explicit requirements: inferring them costs ~25 s per model
            mlflow.sklearn.log_model(LogisticRegression(C=c).fit(x, y), name="model",
                                     registered_model_name=name, pip_requirements=["scikit-learn"])


@pytest.mark.services
def test_mlflow_alias_moves_through_the_ui(platform: Settings, ui_page: Page) -> None:
    name = f"ui-harness-{uuid.uuid4().hex[:8]}"
    registry.configure(platform)  # the server's login, as every platform client sends it
    _register_two_versions(platform.tracking_uri, name)
    client = MlflowClient(platform.tracking_uri)
    assert {v.version for v in client.search_model_versions(f"name='{name}'")} == {"1", "2"}

    mlflow_set_alias(ui_page, platform.tracking_uri, name, 1, "production")
    assert client.get_model_version_by_alias(name, "production").version == "1"

    mlflow_set_alias(ui_page, platform.tracking_uri, name, 2, "production")
    assert client.get_model_version_by_alias(name, "production").version == "2"
    assert client.get_registered_model(name).aliases == {"production": "2"}
    shot = mlflow_screenshot(ui_page, platform.tracking_uri, name, 2, "browser-harness/mlflow-alias-v2.png")
    assert shot.is_file()
