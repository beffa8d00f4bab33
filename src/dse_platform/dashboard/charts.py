"""The dashboard's Plotly figures: pure functions from the query frames to figures, units on every axis.

Times arrive as Asia/Dhaka wall time (``display.dhaka``); DSE trades Sunday to Thursday,
so date axes of bars skip Fridays and Saturdays.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dse_platform.dashboard.display import TZ_LABEL

UP, DOWN, FLAT = "#2e9d5b", "#d1495b", "#8c8c8c"
ROLE_COLOURS = {"production": "#1f77b4", "challenger": "#ff7f0e"}
#: DSE's weekend: Friday 00:00 to Sunday 00:00 is never a session
WEEKEND = {"bounds": ["fri", "sun"]}
HEIGHT = 360
#: tick labels of per-minute axes: the minute, and the day under it
MINUTES = "%H:%M<br>%b %d"


def _layout(fig: go.Figure, title: str, height: int = HEIGHT, **kw) -> go.Figure:
    """Title top left, the legend in one row between it and the plot."""
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 80, "b": 10},
                      title={"text": title, "x": 0, "xanchor": "left", "y": 0.99, "yanchor": "top"},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0, "xanchor": "left"}, **kw)
    return fig


def index_lines(history: pd.DataFrame, names: dict[str, str]) -> go.Figure:
    """Each index's close over time, one line each (points)."""
    fig = go.Figure([go.Scatter(x=part["date"], y=part["close"], mode="lines", name=names.get(symbol, symbol))
                     for symbol, part in history.groupby("symbol", sort=False)])
    fig.update_xaxes(title="session date", rangebreaks=[WEEKEND])
    fig.update_yaxes(title="index (points)")
    return _layout(fig, "DSE indices")


def breadth_bar(counts: dict[str, int]) -> go.Figure:
    """Advancers, decliners and unchanged instruments of one session."""
    labels = ["advancers", "decliners", "unchanged"]
    fig = go.Figure(go.Bar(x=labels, y=[counts[k] for k in labels], marker_color=[UP, DOWN, FLAT],
                           text=[counts[k] for k in labels], textposition="auto"))
    fig.update_yaxes(title="instruments")
    return _layout(fig, "Market breadth", height=300)


def movers_bar(movers: pd.DataFrame) -> go.Figure:
    """Close-to-close change of the top gainers and losers (%), hover with closes in Tk."""
    frame = movers.sort_values("change_pct")
    fig = go.Figure(go.Bar(
        x=frame["change_pct"], y=frame["symbol"], orientation="h",
        marker_color=[UP if v > 0 else DOWN for v in frame["change_pct"]],
        customdata=frame[["close", "prev_close"]].to_numpy(),
        hovertemplate="%{y}: %{x:.2f}%<br>close Tk %{customdata[0]:,.2f} (previous Tk %{customdata[1]:,.2f})"
                      "<extra></extra>"))
    fig.update_xaxes(title="change on the previous close (%)")
    return _layout(fig, "Top movers", height=max(300, 22 * len(frame) + 80))


def direction_bar(called: pd.DataFrame) -> go.Figure:
    """Instruments called up and down for the next session, per role."""
    fig = go.Figure()
    for name, column, colour in (("called up", "up", UP), ("called down", "down", DOWN)):
        fig.add_bar(x=called["role"] + " v" + called["model_version"].astype(str), y=called[column], name=name,
                    marker_color=colour, text=called[column], textposition="auto")
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title="instruments")
    return _layout(fig, "Predicted direction for the next session", height=300)


def up_share_lines(share: pd.DataFrame) -> go.Figure:
    """Share of instruments called up beside the share that went up, per session (production)."""
    fig = go.Figure([
        go.Scatter(x=share["date"], y=share["up"] / share["scored"], mode="lines", name="called up (production)"),
        go.Scatter(x=share["date"], y=share["went_up"] / share["resolved"], mode="lines", name="went up"),
    ])
    fig.update_xaxes(title="session date", rangebreaks=[WEEKEND])
    fig.update_yaxes(title="share of instruments", tickformat=".0%")
    return _layout(fig, "Called up vs went up", height=300)


def candlestick(bars: pd.DataFrame, symbol: str) -> go.Figure:
    """OHLC candles (Tk) over volume bars (shares)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.03)
    fig.add_trace(go.Candlestick(x=bars["date"], open=bars["open"], high=bars["high"], low=bars["low"],
                                 close=bars["close"], name=symbol, increasing_line_color=UP,
                                 decreasing_line_color=DOWN), row=1, col=1)
    colours = [UP if c >= o else DOWN for o, c in zip(bars["open"], bars["close"], strict=True)]
    fig.add_trace(go.Bar(x=bars["date"], y=bars["volume"], name="volume", marker_color=colours), row=2, col=1)
    fig.update_xaxes(rangebreaks=[WEEKEND], rangeslider_visible=False)
    fig.update_xaxes(title="session date", row=2, col=1)
    fig.update_yaxes(title="price (Tk)", row=1, col=1)
    fig.update_yaxes(title="volume (shares)", row=2, col=1)
    return _layout(fig, f"{symbol}: daily bars", height=520, showlegend=False)


def probability_chart(preds: pd.DataFrame) -> go.Figure:
    """P(up) over time per role (line colour), each resolved prediction marked right or wrong."""
    fig = go.Figure()
    for role, part in preds.groupby("role", sort=False):
        fig.add_trace(go.Scatter(x=part["date"], y=part["probability"], mode="lines", name=f"P(up), {role}",
                                 line={"color": ROLE_COLOURS.get(role)}))
    for outcome, mask, colour, symbol in (
            ("right", preds["correct"].eq(True), UP, "circle"),
            ("wrong", preds["correct"].eq(False), DOWN, "x"),
            ("not resolved yet", preds["correct"].isna(), FLAT, "circle-open")):
        if mask.any():
            marked = preds[mask]
            fig.add_trace(go.Scatter(x=marked["date"], y=marked["probability"], mode="markers", name=outcome,
                                     marker={"color": colour, "symbol": symbol}, customdata=marked["role"],
                                     hovertemplate="%{x}: P(up) %{y:.3f} (%{customdata})<extra></extra>"))
    fig.add_hline(y=0.5, line_dash="dot", line_color=FLAT)
    fig.update_xaxes(title="session date (bar scored)", rangebreaks=[WEEKEND])
    fig.update_yaxes(title="P(next close above this close)", range=[0, 1])
    return _layout(fig, "Model probability of an up move", height=380)


def accuracy_lines(rolling: pd.DataFrame) -> go.Figure:
    """Rolling live accuracy per role and version beside the majority and always-up baselines."""
    fig = go.Figure()
    for (role, version), part in rolling.groupby(["role", "model_version"], sort=False):
        fig.add_trace(go.Scatter(x=part["date"], y=part["accuracy"], mode="lines", name=f"{role} v{version}",
                                 line={"color": ROLE_COLOURS.get(role)}))
    production = rolling[rolling["role"] == "production"]
    base = production if not production.empty else rolling
    for column, name, dash in (("majority", "baseline: majority", "dash"), ("always_up", "baseline: always up",
                                                                           "dot")):
        daily = base.groupby("date", as_index=False)[column].mean()
        fig.add_trace(go.Scatter(x=daily["date"], y=daily[column], mode="lines", name=name,
                                 line={"color": FLAT, "dash": dash}))
    fig.update_xaxes(title="session date (bar scored)", rangebreaks=[WEEKEND])
    fig.update_yaxes(title="accuracy", tickformat=".0%")
    return _layout(fig, "Live accuracy (rolling)")


def calibration_chart(calib: pd.DataFrame) -> go.Figure:
    """Observed up rate against mean predicted P(up) per decile, per role; the diagonal is perfect calibration."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                               line={"color": FLAT, "dash": "dot"}))
    for role, part in calib.groupby("role", sort=False):
        fig.add_trace(go.Scatter(x=part["predicted"], y=part["observed"], mode="lines+markers", name=role,
                                 line={"color": ROLE_COLOURS.get(role)}, customdata=part["outcomes"],
                                 hovertemplate="predicted %{x:.2f}, observed %{y:.2f} (%{customdata:,} outcomes)"
                                               "<extra></extra>"))
    fig.update_xaxes(title="mean predicted P(up)", range=[0, 1])
    fig.update_yaxes(title="observed share that went up", range=[0, 1])
    return _layout(fig, "Calibration of live predictions")


def drift_bar(psi: pd.Series, threshold: float) -> go.Figure:
    """PSI per drift-monitored feature, with the alert threshold."""
    ordered = psi.sort_values()
    fig = go.Figure(go.Bar(x=ordered.to_numpy(), y=ordered.index, orientation="h",
                           marker_color=[DOWN if v > threshold else ROLE_COLOURS["production"]
                                         for v in ordered.to_numpy()]))
    fig.add_vline(x=threshold, line_dash="dash", line_color=DOWN)
    fig.update_xaxes(title="population stability index (PSI)")
    return _layout(fig, "Feature drift", height=max(300, 22 * len(ordered) + 80))


def lag_chart(minutes: pd.DataFrame) -> go.Figure:
    """Mean and max produce-to-row lag per minute of commit (seconds)."""
    fig = go.Figure([
        go.Scatter(x=minutes["time"], y=minutes["mean_lag_ms"] / 1000, mode="lines+markers", name="mean"),
        go.Scatter(x=minutes["time"], y=minutes["max_lag_ms"] / 1000, mode="lines", name="max",
                   line={"dash": "dot"}),
    ])
    fig.update_xaxes(title=f"committed at ({TZ_LABEL})", tickformat=MINUTES)
    fig.update_yaxes(title="lag (s)", rangemode="tozero")
    return _layout(fig, "Produced to committed row")


def lag_histogram_bar(buckets: pd.DataFrame) -> go.Figure:
    """How many rows fell in each lag bucket."""
    fig = go.Figure(go.Bar(x=buckets["label"], y=buckets["rows"]))
    fig.update_xaxes(title="lag", type="category")
    fig.update_yaxes(title="rows")
    return _layout(fig, "Lag distribution", height=300)


def throughput_chart(minutes: pd.DataFrame) -> go.Figure:
    """Rows committed per second, averaged per minute."""
    fig = go.Figure(go.Bar(x=minutes["time"], y=minutes["rows"] / 60, name="rows/s"))
    fig.update_xaxes(title=f"committed at ({TZ_LABEL})", tickformat=MINUTES)
    fig.update_yaxes(title="predictions committed (rows/s)")
    return _layout(fig, "Committed predictions per second", height=300)


def batches_chart(batches: pd.DataFrame) -> go.Figure:
    """Each micro-batch's duration (s) and records per second."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=batches["batch"], y=batches["duration_s"], name="duration (s)"), secondary_y=False)
    fig.add_trace(go.Scatter(x=batches["batch"], y=batches["records_per_s"], mode="lines+markers",
                             name="records/s"), secondary_y=True)
    fig.update_xaxes(title="micro-batch id")
    fig.update_yaxes(title="duration (s)", secondary_y=False)
    fig.update_yaxes(title="records per second", secondary_y=True, rangemode="tozero")
    return _layout(fig, "Micro-batches")


def dead_letters_bar(reasons: pd.DataFrame) -> go.Figure:
    """Dead letters per reason."""
    fig = go.Figure(go.Bar(x=reasons["count"], y=reasons["reason"], orientation="h", marker_color=DOWN))
    fig.update_xaxes(title="dead letters")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Dead letters by reason", height=max(260, 26 * len(reasons) + 80))
