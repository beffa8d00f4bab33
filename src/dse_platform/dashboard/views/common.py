"""What every page shares: the period picker, how a chart and a table are shown."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dse_platform.dashboard import display

#: period choices of the date-based pages: label -> days back from the newest session (None: everything)
PERIODS: dict[str, int | None] = {"3 months": 92, "1 year": 366, "3 years": 3 * 366, "all": None}
#: Plotly's toolbar without the logo; the chart stays zoomable and pannable
PLOT_CONFIG = {"displaylogo": False}


def period_start(newest: dt.date, key: str, default: str = "1 year") -> dt.date:
    """A period picker; returns the first date the page shows."""
    label = st.segmented_control("Period", list(PERIODS), default=default, key=key, required=True)
    days = PERIODS[label or default]
    return dt.date.min if days is None else newest - dt.timedelta(days=days)


def chart(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, key=key, config=PLOT_CONFIG)


def table(frame: pd.DataFrame, key: str, **column_config) -> None:
    """A read-only table: cells are text, never markup."""
    st.dataframe(frame, key=key, hide_index=True, column_config=column_config or None)


def _details(raw: str) -> dict:
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def event_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Events as shown: Dhaka time, the reason (or alert) out of the JSON details."""
    details = frame["details"].map(_details)
    return pd.DataFrame({
        f"at ({display.TZ_LABEL})": display.dhaka(frame["at"]), "event": frame["event"],
        "version": frame["version"], "previous": frame["previous_version"], "source": frame["source"],
        "why": details.map(lambda d: str(d.get("reason") or d.get("alert") or d.get("found_by") or "")),
    })
