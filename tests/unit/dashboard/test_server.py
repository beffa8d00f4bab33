"""The dashboard as a supervised program: its command line, URL and place among the services."""

from __future__ import annotations

import sys

from dse_platform.config import Settings
from dse_platform.dashboard import server
from dse_platform.runtime.services import services


def test_streamlit_runs_headless_on_the_configured_address() -> None:
    settings = Settings(_env_file=None, host="0.0.0.0", dashboard_port=8600)
    cmd = server.command(settings)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(server.APP)]
    options = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert options == {"--server.address": "0.0.0.0", "--server.port": "8600", "--server.headless": "true",
                       "--browser.gatherUsageStats": "false", "--server.fileWatcherType": "none",
                       "--server.runOnSave": "false", "--global.developmentMode": "false",
                       "--client.toolbarMode": "viewer"}
    assert server.url(settings) == "http://0.0.0.0:8600"


def test_dse_up_starts_the_dashboard() -> None:
    settings = Settings(_env_file=None, dashboard_port=8600)
    dashboard = {s.name: s for s in services(settings)}["dashboard"]
    assert dashboard.autostart and dashboard.ports == [8600] and dashboard.port_setting == "DSE_DASHBOARD_PORT"
    assert dashboard.command() == server.command(settings)
    assert dashboard.check is server.health
