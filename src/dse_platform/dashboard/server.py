"""How the dashboard is served: the Streamlit command line, its URL and its health check.

One place for all three, so `dse up` (the supervised ``dashboard`` program), the tests and
the benchmark start the same server. Headless, no usage statistics sent anywhere, no file
watcher (nothing reloads under a running platform), bound to DSE_HOST on DSE_DASHBOARD_PORT.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dse_platform.config import Settings
from dse_platform.runtime.health import Check, http_health

APP = Path(__file__).with_name("app.py")


def url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.dashboard_port}"


def command(settings: Settings) -> list[str]:
    """``streamlit run`` of the app with the server options the platform needs."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", settings.host, "--server.port", str(settings.dashboard_port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false",
            "--global.developmentMode", "false", "--client.toolbarMode", "viewer"]


def health(settings: Settings) -> Check:
    """Streamlit's own health endpoint answers ``ok`` once the server is up."""
    return http_health(f"{url(settings)}/_stcore/health", expect="ok")
