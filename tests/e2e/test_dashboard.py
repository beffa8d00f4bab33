"""The Streamlit dashboard in Debian's Chromium (Playwright), on a SQLite database written by the sink's upserts.

The server is started by `dse dashboard`, the command line `dse up` gives supervisor. Every page
renders from the constructed world (bars, features, both roles' predictions, outcomes,
hostile dead letters, model events, a bar store for drift, a stream checkpoint) with no
Streamlit exception box; the instrument search finds a code and draws its chart, and an
injection attempt is simply "not found"; an empty database says what to run, and the page
turns into the market by itself once the stream has written (the automatic refresh).
Screenshots land in var/test-artifacts/dashboard/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from dse_platform.config import Settings
from tests.support.browser import TIMEOUT_MS
from tests.support.dashboard import PAGES, dashboard, drawn, reader_url, shot
from tests.support.platform import fresh_database
from tests.unit.dashboard import world as worlds

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Iterator[str]:
    """A dashboard on a filled database, with a bar store and a checkpoint beside it."""
    tmp = tmp_path_factory.mktemp("dashboard")
    world = worlds.make(sessions=140, codes=(*worlds.CODES, "ACI", "RENATA"))
    engine = create_engine(f"sqlite:///{tmp / 'serving.db'}")
    worlds.write(engine, world)
    engine.dispose()
    worlds.write_store(world, tmp / "store")
    worlds.write_checkpoint(tmp / "checkpoint")
    with dashboard(tmp, f"sqlite:///{tmp / 'serving.db'}", DSE_MONITOR_REFERENCE_SESSIONS="60") as url:
        yield url


def test_every_page_renders(ui_page: Page, filled: str) -> None:
    dialogs: list[str] = []
    ui_page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    ui_page.goto(filled)
    drawn(ui_page, "Market")
    expect(ui_page.locator('[data-testid="stPlotlyChart"]')).to_have_count(5, timeout=TIMEOUT_MS)
    expect(ui_page.get_by_text("DSEX on ")).to_be_visible()
    shot(ui_page, "market")
    nav = ui_page.get_by_test_id("stSidebarNav")
    for title in ("Model", "Pipeline", "Instrument"):
        nav.get_by_role("link", name=title).click()
        ui_page.wait_for_url(re.compile(f"/{PAGES[title]}$"))
        drawn(ui_page, title)
        shot(ui_page, title.lower())
    ui_page.goto(f"{filled}/model")
    drawn(ui_page, "Model")
    expect(ui_page.get_by_text("Last nightly decision")).to_be_visible()
    expect(ui_page.get_by_text("Feature drift").first).to_be_visible()
    ui_page.goto(f"{filled}/pipeline")
    drawn(ui_page, "Pipeline")
    for section in ("Produced to committed", "Micro-batches", "Dead letters", "Alerts", "Services"):
        expect(ui_page.get_by_role("heading", name=section)).to_be_visible()
    ui_page.get_by_label("Samples of").click()
    ui_page.get_by_role("option", name="invalid_json").click()
    drawn(ui_page, "Pipeline")
    shot(ui_page, "pipeline-hostile-dead-letter")
    assert dialogs == []  # the hostile raw bytes ran nothing


def test_instrument_search(ui_page: Page, filled: str) -> None:
    ui_page.goto(f"{filled}/instrument")
    drawn(ui_page, "Instrument")
    box = ui_page.get_by_role("textbox", name="Trading code")
    box.fill("gp")
    box.press("Enter")
    expect(ui_page.get_by_text("GP: daily bars")).to_be_visible(timeout=TIMEOUT_MS)
    expect(ui_page.get_by_text("Model probability of an up move")).to_be_visible(timeout=TIMEOUT_MS)
    expect(ui_page.get_by_text("sector Telecommunication, category A")).to_be_visible()
    drawn(ui_page, "Instrument")
    shot(ui_page, "instrument-gp")

    box.fill(worlds.INJECTION)
    box.press("Enter")
    expect(ui_page.get_by_text(re.compile("not found in the serving database"))).to_be_visible(timeout=TIMEOUT_MS)
    expect(ui_page.get_by_text(worlds.INJECTION, exact=True)).to_be_visible()  # as typed, nothing run
    expect(ui_page.get_by_text("GP: daily bars")).to_have_count(0, timeout=TIMEOUT_MS)
    drawn(ui_page, "Instrument")
    shot(ui_page, "instrument-injection")

    box.fill("br")
    box.press("Enter")
    expect(ui_page.get_by_text(re.compile("not found"))).to_be_visible(timeout=TIMEOUT_MS)
    ui_page.get_by_text("BRACBANK", exact=True).click()
    expect(ui_page.get_by_text("BRACBANK: daily bars")).to_be_visible(timeout=TIMEOUT_MS)
    drawn(ui_page, "Instrument")


def test_a_code_in_the_url_opens_its_chart(ui_page: Page, filled: str) -> None:
    ui_page.goto(f"{filled}/instrument?code=dsex")
    expect(ui_page.get_by_text("00DSEX: daily bars")).to_be_visible(timeout=TIMEOUT_MS)
    drawn(ui_page, "Instrument")


def test_an_empty_database_says_what_to_run_then_shows_the_data(ui_page: Page, tmp_path: Path) -> None:
    db = tmp_path / "serving.db"
    with dashboard(tmp_path, f"sqlite:///{db}", DSE_DASHBOARD_REFRESH_S="2") as url:
        ui_page.goto(url)
        drawn(ui_page, "No data yet")
        expect(ui_page.get_by_text("make demo").first).to_be_visible()
        shot(ui_page, "empty")
        engine = create_engine(f"sqlite:///{db}")
        worlds.write(engine, worlds.make())
        engine.dispose()
        # no reload: the page's own refresh finds the rows
        drawn(ui_page, "Market")
        assert httpx.get(f"{url}/_stcore/health", timeout=5).text == "ok"


@pytest.mark.services
def test_pages_on_postgres_through_the_read_only_role(platform: Settings, ui_page: Page, tmp_path: Path) -> None:
    """The session's PostgreSQL: every page through the reader role, which cannot write whatever it tries."""
    owner_url = fresh_database(platform)
    engine = create_engine(owner_url)
    worlds.write(engine, worlds.make())
    engine.dispose()
    read_only = reader_url(platform, owner_url)
    with dashboard(tmp_path, owner_url, DSE_DASHBOARD_DB_URL=read_only) as url:
        for title, path in PAGES.items():
            ui_page.goto(f"{url}/{path}")
            drawn(ui_page, title)
            shot(ui_page, f"postgres-{title.lower()}")
    reader = create_engine(read_only)
    for statement in ("INSERT INTO dead_letters (topic, partition, \"offset\", reason, received_at) "
                      "VALUES ('t', 0, 0, 'r', now())",
                      "UPDATE predictions SET probability = 0", "DELETE FROM bars", "CREATE TABLE evil (x int)"):
        with pytest.raises(DBAPIError, match="permission denied"), reader.begin() as conn:
            conn.execute(text("SET TRANSACTION READ WRITE"))  # rights, not the session default, are what refuse it
            conn.execute(text(statement))
    reader.dispose()
