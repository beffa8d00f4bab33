"""The long/flat backtest on price paths small enough to work out by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from dse_platform.model import backtest

D1, D2, D3 = dt.date(2024, 1, 7), dt.date(2024, 1, 8), dt.date(2024, 1, 9)
COST_BPS = 100.0  # 1% per change of position


def _oos() -> pd.DataFrame:
    rows = [  # symbol, date, close, next close, P(up)
        ("00DSEX", D1, 100.0, 110.0, 0.6),  # +10%, long (enter)
        ("00DSEX", D2, 110.0, 99.0, 0.4),  # -10%, flat (exit)
        ("00DSEX", D3, 99.0, 108.9, 0.7),  # +10%, long (enter)
        ("AAA", D1, 10.0, 11.0, 0.9),  # +10%, long (enter)
        ("AAA", D2, 11.0, 11.0, 0.9),  # 0%, long (hold: no cost)
        ("BBB", D1, 20.0, 18.0, 0.1),  # -10%, flat
        ("BBB", D2, 18.0, 19.8, 0.8),  # +10%, long (enter)
        ("00DS30", D1, 10.0, 15.0, 0.9),  # another index: never in the stock basket
    ]
    frame = pd.DataFrame(rows, columns=["symbol", "date", "close", "next_close", "probability"])
    return frame.iloc[::-1].reset_index(drop=True)  # arrival order must not matter


def test_positions_and_costs_per_row() -> None:
    frame = backtest.daily_returns(_oos(), COST_BPS).set_index(["symbol", "date"])
    index = frame.loc["00DSEX"]
    assert index["pos"].tolist() == [1.0, 0.0, 1.0]
    assert index["strategy"].tolist() == pytest.approx([0.10 - 0.01, -0.01, 0.10 - 0.01])
    assert frame.loc["AAA", "strategy"].tolist() == pytest.approx([0.09, 0.0])
    assert frame.loc["BBB", "strategy"].tolist() == pytest.approx([0.0, 0.09])


def test_index_curve_and_summary() -> None:
    result = backtest.long_flat(_oos(), "00DSEX", COST_BPS)
    curve = result.curves["index"]
    assert curve.index.tolist() == [D1, D2, D3]
    assert curve["buy_and_hold"].tolist() == pytest.approx([1.1, 0.99, 1.089])
    assert curve["model_long_flat"].tolist() == pytest.approx([1.09, 1.09 * 0.99, 1.09 * 0.99 * 1.09])
    s = result.summary
    assert s["index_buy_and_hold_total_return"] == pytest.approx(0.089)
    assert s["index_model_long_flat_total_return"] == pytest.approx(1.09 * 0.99 * 1.09 - 1)
    assert s["index_buy_and_hold_max_drawdown"] == pytest.approx(-0.1)  # 1.1 -> 0.99
    assert s["index_model_long_flat_max_drawdown"] == pytest.approx(-0.01)
    daily = np.array([0.09, -0.01, 0.09])
    assert s["index_model_long_flat_sharpe"] == pytest.approx(daily.mean() / daily.std(ddof=1) * np.sqrt(240))


def test_basket_is_the_equal_weight_mean_of_stocks_only() -> None:
    result = backtest.long_flat(_oos(), "00DSEX", COST_BPS)
    basket = result.curves["basket"]
    assert basket.index.tolist() == [D1, D2]
    # D1: (+10% - 10%) / 2 = 0 buy-and-hold, (9% + 0) / 2 model; D2: (0 + 10%) / 2, (0 + 9%) / 2
    assert basket["buy_and_hold"].tolist() == pytest.approx([1.0, 1.05])
    assert basket["model_long_flat"].tolist() == pytest.approx([1.045, 1.045 ** 2])
    assert result.summary["basket_buy_and_hold_total_return"] == pytest.approx(0.05)


def test_without_index_rows_there_is_no_index_curve() -> None:
    oos = _oos()
    result = backtest.long_flat(oos[oos["symbol"] != "00DSEX"], "00DSEX", COST_BPS)
    assert set(result.curves) == {"basket"}
    assert not any(k.startswith("index_") for k in result.summary)
