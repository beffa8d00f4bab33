"""The dashboard's Streamlit entry point: ``streamlit run app.py`` (see ``server.command``).

Four pages, each redrawn every DSE_DASHBOARD_REFRESH_S seconds inside a fragment, so only
the page's content reruns and its inputs keep their values. Every page first asks what the
database holds: an empty or outdated one shows what to run instead of empty charts.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from dse_platform.config import Settings, get_settings
from dse_platform.dashboard import connection, display, queries
from dse_platform.dashboard.views import instrument, market, model, notice, pipeline

Render = Callable[[Settings, Engine], None]

settings = get_settings()
st.set_page_config(page_title="DSE platform", page_icon=":chart_with_upwards_trend:", layout="wide")


@st.fragment(run_every=settings.dashboard_refresh_s or None)
def live(render: Render) -> None:
    """One page's content, redrawn on the refresh interval, and when it was drawn."""
    content(render)
    st.caption(f"Drawn at {display.now_dhaka()} ({display.TZ_LABEL}).")


def content(render: Render) -> None:
    """The page, or what to do about a database that is missing, empty, outdated or not answering."""
    path = connection.sqlite_path(connection.reader_url(settings))
    if path is not None and not path.exists():
        notice.empty(settings, None)
        return
    engine = connection.engine(settings)
    try:
        state = queries.data_state(engine)
        if not state.current or state.empty:
            notice.empty(settings, state)
            return
        render(settings, engine)
    except OperationalError as exc:
        notice.unreachable(settings, exc)


def page(render: Render, title: str, url_path: str, default: bool = False) -> st.Page:
    """A navigation entry whose content refreshes itself (Streamlit tells pages apart by ``url_path``)."""

    def run() -> None:
        live(render)

    return st.Page(run, title=title, url_path=url_path, default=default)


pipeline.start_health_probe(settings)
with st.sidebar:
    st.caption(f"Serving database, read-only: `{connection.describe(settings)}`")
    st.caption(f"Times in {display.TZ_LABEL}; prices in Tk, turnover in Tk mn.")
    st.caption(f"Refreshes every {settings.dashboard_refresh_s:g} s." if settings.dashboard_refresh_s
               else "Automatic refresh is off (DSE_DASHBOARD_REFRESH_S=0): reload the page.")

st.navigation([
    page(market.render, "Market", "market", default=True),
    page(instrument.render, "Instrument", "instrument"),
    page(model.render, "Model", "model"),
    page(pipeline.render, "Pipeline", "pipeline"),
]).run()
