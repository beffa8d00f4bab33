"""Instrument: find a trading code; its candles and volume, the model's P(up) with right/wrong outcomes, its sector."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from dse_platform.config import Settings
from dse_platform.dashboard import charts, display, queries
from dse_platform.dashboard.views.common import chart, period_start, table
from dse_platform.data.instruments import is_index, load_reference

CODE_KEY, SUGGESTION_KEY = "instrument_code", "instrument_suggestion"
RECENT_PREDICTIONS = 15


@st.cache_data(show_spinner=False)
def _reference(path: str, mtime_ns: int) -> pd.DataFrame:
    """The instrument reference (sector, category), read again only when the file changes."""
    with open(path, encoding="utf-8") as handle:
        return load_reference(handle.read())


def sector_and_category(settings: Settings, symbol: str) -> tuple[str, str]:
    """The instrument's sector and category from the reference file ('index' for DSE's indices)."""
    if is_index(symbol):
        return "index", "index"
    path = settings.reference_file
    if not path.is_file():
        return f"unknown (no reference file at {path})", "unknown"
    reference = _reference(str(path), path.stat().st_mtime_ns)
    if symbol not in reference.index:
        return "not in the instrument reference", "-"
    row = reference.loc[symbol]
    return str(row["sector"]), str(row["category"])


def _take_suggestion() -> None:
    st.session_state[CODE_KEY] = st.session_state[SUGGESTION_KEY]


def render(settings: Settings, engine: Engine) -> None:
    st.header("Instrument")
    if CODE_KEY not in st.session_state:
        st.session_state[CODE_KEY] = st.query_params.get("code", "")
    text = st.text_input("Trading code", key=CODE_KEY, max_chars=40, placeholder="e.g. GP, BRACBANK, DSEX",
                         help="A DSE trading code or index name; case does not matter.")
    if not text.strip():
        st.info("Type a trading code to see its bars and the model's predictions.")
        return
    symbol = queries.find_instrument(engine, text)
    if symbol is None:
        st.warning(f"Trading code {display.code_span(text.strip())} not found in the serving database.")
        suggestions = queries.suggest_codes(engine, text)
        if suggestions:
            st.pills("Stored codes that start like it", suggestions, key=SUGGESTION_KEY,
                     on_change=_take_suggestion)
        return
    st.query_params["code"] = symbol
    since = period_start(queries.latest_session(engine), "instrument_period")
    bars = queries.instrument_bars(engine, symbol, since)
    _summary(settings, symbol, bars)
    if bars.empty:
        st.info(f"No bars of {symbol} in this period: choose a longer one.")
    else:
        chart(charts.candlestick(bars, symbol), "instrument_candles")
    _predictions(queries.instrument_predictions(engine, symbol, since), symbol)


def _summary(settings: Settings, symbol: str, bars: pd.DataFrame) -> None:
    sector, category = sector_and_category(settings, symbol)
    st.markdown(f"**{symbol}**: sector {display.literal(sector)}, category {display.literal(category)}")
    if bars.empty:
        return
    last = bars.iloc[-1]
    delta = None if len(bars) < 2 else f"{(last['close'] / bars.iloc[-2]['close'] - 1) * 100:+.2f}%"
    columns = st.columns(3)
    columns[0].metric(f"Close on {last['date']}", display.taka(last["close"]), delta=delta)
    columns[1].metric("Volume (shares)", "-" if pd.isna(last["volume"]) else f"{last['volume']:,.0f}")
    columns[2].metric("Turnover", display.taka_mn(last["value_mn"]))


def _predictions(preds: pd.DataFrame, symbol: str) -> None:
    st.subheader("The model's probability of an up move")
    if preds.empty:
        st.info(f"No predictions for {symbol} in this period.")
        return
    resolved = preds[preds["correct"].notna()]
    production = resolved[resolved["role"] == "production"]
    if not production.empty:
        st.caption(f"Production was right on {int(production['correct'].astype(bool).sum())} of {len(production)} "
                   "resolved predictions in this period.")
    chart(charts.probability_chart(preds), "instrument_probability")
    recent = preds.sort_values(["date", "role"], ascending=[False, False]).head(RECENT_PREDICTIONS)
    shown = recent.assign(
        call=recent["label"].map({1: "up", 0: "down"}),
        outcome=recent["correct"].map({True: "right", False: "wrong"}).fillna("not resolved yet"))
    table(shown[["date", "role", "model_version", "probability", "call", "next_date", "outcome"]],
          "instrument_recent", probability=st.column_config.NumberColumn("P(up)", format="%.3f"),
          next_date=st.column_config.DateColumn("resolved by the session of"))
