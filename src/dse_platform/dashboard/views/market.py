"""Market: DSEX, DSES and DS30 on the latest session and over time, breadth, top movers, the day's calls."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from dse_platform.config import Settings
from dse_platform.dashboard import charts, display, queries
from dse_platform.dashboard.views.common import chart, period_start, table
from dse_platform.data.instruments import INDEX_ALIASES

#: how the page names each index: DSE's own spelling of the stored code
INDEX_NAMES = {code: name for name, code in INDEX_ALIASES.items()}
#: sessions of called-up vs went-up history under the day's calls
CALL_HISTORY_DAYS = 92


def render(settings: Settings, engine: Engine) -> None:
    day = queries.latest_session(engine)
    st.header("Market")
    st.caption(f"Latest session {day} (trading date, {display.TZ_LABEL}). Index values in points, prices in Tk, "
               "turnover in Tk mn.")
    since = period_start(day, "market_period")
    history = queries.index_history(engine, since)
    _index_metrics(history)
    if not history.empty:
        chart(charts.index_lines(history, INDEX_NAMES), "market_indices")
    left, right = st.columns(2)
    with left:
        counts = queries.breadth(engine, day)
        chart(charts.breadth_bar(counts), "market_breadth")
        if counts["first_bar"]:
            st.caption(f"{counts['first_bar']} instrument(s) with no earlier bar are not counted.")
    with right:
        movers = queries.top_movers(engine, day)
        if movers.empty:
            st.info(f"No instrument has two bars up to {day} yet: no movers to show.")
        else:
            chart(charts.movers_bar(movers), "market_movers")
    if not movers.empty:
        _movers_table(movers)
    _calls(engine)


def _index_metrics(history: pd.DataFrame) -> None:
    """One metric per index: its latest close, the change on the session before, and the turnover."""
    for column, code in zip(st.columns(len(queries.MARKET_INDICES)), queries.MARKET_INDICES, strict=True):
        part = history[history["symbol"] == code]
        name = INDEX_NAMES[code]
        if part.empty:
            column.metric(name, "-", help=f"no bars of {name} ({code}) stored in this period")
            continue
        last = part.iloc[-1]
        delta = None if len(part) < 2 else f"{(last['close'] / part.iloc[-2]['close'] - 1) * 100:+.2f}%"
        column.metric(f"{name} on {last['date']}", f"{last['close']:,.2f} points", delta=delta,
                      help=f"turnover {display.taka_mn(last['value_mn'])}")


def _movers_table(movers: pd.DataFrame) -> None:
    shown = movers.assign(instrument="instrument?code=" + movers["symbol"])[
        ["side", "symbol", "instrument", "close", "prev_close", "change_pct", "volume", "value_mn"]]
    table(shown, "market_movers_table",
          instrument=st.column_config.LinkColumn("chart", display_text="open"),
          close=st.column_config.NumberColumn("close (Tk)", format="%.2f"),
          prev_close=st.column_config.NumberColumn("previous close (Tk)", format="%.2f"),
          change_pct=st.column_config.NumberColumn("change (%)", format="%+.2f"),
          volume=st.column_config.NumberColumn("volume (shares)", format="%d"),
          value_mn=st.column_config.NumberColumn("turnover (Tk mn)", format="%.2f"))


def _calls(engine: Engine) -> None:
    """The latest scored session's predicted up/down counts per role, and the recent history of calls."""
    st.subheader("The model's calls")
    scored_day = queries.latest_prediction_date(engine)
    if scored_day is None:
        st.info("No predictions yet: the streaming job scores bars once a model is promoted "
                "(`dse train --promote`, then `dse stream --background`).")
        return
    called = queries.predicted_direction(engine, scored_day)
    called["up"] = called["up"].astype(int)
    called["down"] = called["scored"] - called["up"]
    left, right = st.columns(2)
    with left:
        chart(charts.direction_bar(called), "market_direction")
        st.caption(f"Bars of {scored_day}, called for the next session. Production is what was served; "
                   "a challenger, where present, was scored in shadow.")
    with right:
        share = queries.predicted_up_share(engine, scored_day - dt.timedelta(days=CALL_HISTORY_DAYS))
        chart(charts.up_share_lines(share), "market_up_share")
