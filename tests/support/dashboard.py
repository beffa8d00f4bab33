"""The Streamlit dashboard served for a test, and the checks every drawn page gets (browser tests)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect
from sqlalchemy.engine import make_url

from dse_platform.config import PROJECT_DIR, Settings
from dse_platform.dashboard import server
from dse_platform.runtime import pgserver
from tests.support.browser import ARTIFACTS_DIR, TIMEOUT_MS, screenshot
from tests.support.platform import DSE, free_port, settings_for, wait_for

SHOTS = "dashboard"
#: tall enough that a whole page fits in a screenshot (Streamlit scrolls inside its own container)
SHOT_VIEWPORT = {"width": 1400, "height": 2600}
PAGES = {"Market": "", "Instrument": "instrument", "Model": "model", "Pipeline": "pipeline"}


@contextmanager
def dashboard(tmp: Path, db_url: str, **extra: str) -> Iterator[str]:
    """The dashboard served by `dse dashboard` (`dse up`'s command line, in the foreground) on a free port for
    ``db_url``; yields its URL, stops it after (its log kept)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSE_")}
    env.update({"DSE_HOME": str(tmp / "var"), "DSE_DB_URL": db_url, "DSE_DASHBOARD_PORT": str(free_port()),
                "DSE_STORE_DIR": str(tmp / "store"), "DSE_STREAM_CHECKPOINT": str(tmp / "checkpoint"), **extra})
    settings = settings_for(env)
    log = ARTIFACTS_DIR / SHOTS / f"streamlit-{tmp.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen([DSE, "dashboard"], env=env, cwd=PROJECT_DIR, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is not None or server.health(settings)[0], 60, "the dashboard's health check")
        assert proc.poll() is None, f"streamlit exited: {log.read_text()[-2000:]}"
        yield server.url(settings)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def reader_url(platform: Settings, owner_url: str) -> str:
    """The read-only role's URL of a test database, its rights granted as `dse up` grants them on ``dse``."""
    pgserver.grant_read_only(owner_url, platform.dashboard_db_user)
    password = make_url(platform.local_postgres_url("reader_password", platform.dashboard_db_user, "dse")).password
    return make_url(owner_url).set(username=platform.dashboard_db_user, password=password).render_as_string(
        hide_password=False)


def drawn(page: Page, heading: str) -> None:
    """Wait until a page's script has run to its end (its heading, then the closing caption), and check it is clean."""
    expect(page.get_by_role("heading", name=heading).first).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text(re.compile(r"^Drawn at \d{4}-\d\d-\d\d"))).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=TIMEOUT_MS)
    no_exception(page)


def no_exception(page: Page) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, "Streamlit exception: " + " | ".join(b.inner_text()[:500] for b in boxes.all())


def shot(page: Page, name: str) -> Path:
    page.set_viewport_size(SHOT_VIEWPORT)
    return screenshot(page, f"{SHOTS}/{name}.png")
