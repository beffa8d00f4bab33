"""The backtest on price paths small enough to work out by hand: next-open fills, costs, spreads, deciles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dse_platform.model import backtest, reports
from tests.unit.model.synthetic import random_bars, sessions

D1, D2, D3, D4 = sessions(4)
COST_BPS = 100.0  # 1% per side


@pytest.fixture
def no_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Costs are ``COST_BPS`` alone, so the arithmetic below stays exact."""
    monkeypatch.setattr(backtest, "SPREAD_BUCKETS", ((0.0, 0.0),))


def _bars(symbol: str, rows: list[tuple], volume: float = 1e6) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["date", "open", "close"])
    return frame.assign(symbol=symbol, volume=volume)


def _path() -> tuple[pd.DataFrame, pd.DataFrame]:
    """AAA: long at D1's close, flat at D2's, long at D3's; D4 is the session after the last signal."""
    bars = _bars("AAA", [(D1, 100.0, 100.0), (D2, 110.0, 120.0), (D3, 90.0, 95.0), (D4, 100.0, 100.0)])
    predictions = pd.DataFrame({"symbol": "AAA", "date": [D1, D2, D3], "probability": [0.9, 0.1, 0.9]})
    return predictions, bars


@pytest.mark.usefixtures("no_spread")
def test_a_signal_is_filled_at_the_next_open_and_held_open_to_open() -> None:
    predictions, bars = _path()
    result = backtest.run(predictions, bars, cost_bps=0.0, index_symbol="00DSEX")
    # next-open: bought at D2's open 110, sold at D3's open 90; a same-close fill would have made 120/100 - 1
    assert result.returns["long_flat"].tolist() == pytest.approx([90 / 110 - 1, 0.0, 0.0])
    assert result.returns["long_flat"].iloc[0] != pytest.approx(120 / 100 - 1)
    fills = result.fills.set_index("date")
    assert fills["entry_date"].tolist() == [D2, D3, D4]
    assert fills["exit_date"].tolist() == [D3, D4, D4]  # the last one closes at D4's close
    assert fills.loc[D3, "ret"] == pytest.approx(0.0)  # D4: open 100, close 100


@pytest.mark.usefixtures("no_spread")
def test_costs_are_charged_on_entry_switches_and_the_final_exit() -> None:
    predictions, bars = _path()
    result = backtest.run(predictions, bars, COST_BPS, "00DSEX")
    # D1: enter (1%); D2: exit (1%); D3: enter and the closing exit at the end (2%)
    assert result.returns["long_flat"].tolist() == pytest.approx([90 / 110 - 1 - 0.01, -0.01, -0.02])
    # buy-and-hold of the same instrument: one entry, one exit, no cost in between
    assert result.returns["basket_buy_and_hold"].tolist() == pytest.approx([90 / 110 - 1 - 0.01, 100 / 90 - 1,
                                                                            -0.01])
    s = result.summary
    assert s["long_flat_cost"] == pytest.approx(0.04)
    assert s["long_flat_turnover"] == pytest.approx(4 / 3)
    assert s["basket_buy_and_hold_cost"] == pytest.approx(0.02)
    growth = np.cumprod(1 + np.array([90 / 110 - 1 - 0.01, -0.01, -0.02]))
    assert result.curves["long_flat"].tolist() == pytest.approx(growth.tolist())
    assert s["long_flat_total_return"] == pytest.approx(growth[-1] - 1)
    assert s["long_flat_max_drawdown"] == pytest.approx(growth[-1] - 1)  # it only falls
    daily = result.returns["long_flat"]
    assert s["long_flat_sharpe"] == pytest.approx(daily.mean() / daily.std(ddof=1) * np.sqrt(240))


def test_the_half_spread_follows_trailing_traded_value() -> None:
    rows = [(D1, 10.0, 10.0), (D2, 10.0, 10.0), (D3, 10.0, 10.0)]
    liquid = _bars("LIQ", rows, volume=2e6)  # 20 mn taka a day
    thin = _bars("THIN", rows, volume=500.0)  # 5,000 taka a day
    # value_mn, when the store has it, is the traded value: 2 mn taka a day whatever close x volume says
    by_value = _bars("VAL", rows, volume=1.0).assign(value_mn=2.0)
    predictions = pd.DataFrame({"symbol": ["LIQ", "THIN", "VAL"] * 2, "date": [D1] * 3 + [D2] * 3,
                                "probability": 0.9})
    result = backtest.run(predictions, pd.concat([liquid, thin, by_value]), 0.0, "00DSEX")
    spread = result.fills.groupby("symbol")["half_spread_bps"].first()
    assert spread.to_dict() == {"LIQ": 15.0, "THIN": 120.0, "VAL": 30.0}
    # the basket enters all three at D2's open (1/3 each) and leaves at D3's close: flat prices, costs only
    side = (15.0 + 120.0 + 30.0) / 3 / 1e4
    assert result.summary["basket_buy_and_hold_cost"] == pytest.approx(2 * side)
    assert result.summary["basket_buy_and_hold_total_return"] == pytest.approx((1 - side) ** 2 - 1)


@pytest.mark.usefixtures("no_spread")
def test_decile_long_short_ranks_each_session_cross_section() -> None:
    symbols = [f"S{k:02d}" for k in range(20)]
    bars = pd.concat([_bars(s, [(D1, 10.0, 10.0), (D2, 10.0, 10.0 + k)]) for k, s in enumerate(symbols)])
    predictions = pd.DataFrame({"symbol": symbols, "date": D1, "probability": np.linspace(0.3, 0.7, 20)})
    result = backtest.run(predictions, bars, 0.0, "00DSEX")
    # 20 instruments: 2 a decile; long S18, S19 (+18%/+19% ... to D2's close), short S00, S01 (0%, +1%)
    long_leg, short_leg = (1.8 + 1.9) / 2, (0.0 + 0.1) / 2
    assert result.returns["decile_long_short"].tolist() == pytest.approx([long_leg - short_leg])
    # long/flat: P(up) >= 0.5 from S10 on, each 1/20 of the book
    assert result.returns["long_flat"].tolist() == pytest.approx([sum(k / 10 for k in range(10, 20)) / 20])


def test_no_decision_uses_a_bar_after_its_signal_session() -> None:
    days = sessions(30)
    bars = pd.concat([random_bars(s, 30, seed) for seed, s in enumerate(["AAA", "BBB", "CCC", "DDD"])])
    rng = np.random.default_rng(0)
    predictions = bars.loc[bars["date"] < days[-1], ["symbol", "date"]].assign(
        probability=lambda f: rng.uniform(0.3, 0.7, len(f)))
    cut = days[15]
    changed = bars.copy()
    later = changed["date"] > cut
    changed.loc[later, ["open", "close"]] *= rng.uniform(0.5, 2.0, (later.sum(), 1))
    changed.loc[later, "volume"] *= 1e4
    before, after = (backtest.run(predictions, b, 30.0, "00DSEX") for b in (bars, changed))
    assert (before.fills["entry_date"] > before.fills["date"]).all()
    assert (before.fills["exit_date"] >= before.fills["entry_date"]).all()
    known = before.fills["date"] <= cut
    assert after.fills.loc[known, "half_spread_bps"].tolist() == before.fills.loc[known, "half_spread_bps"].tolist()
    # a signal of session t is closed at the open of t+2: those of sessions up to cut-2 see nothing later
    settled = before.returns.index <= days[13]
    pd.testing.assert_frame_equal(before.returns[settled], after.returns[settled])
    assert not before.returns.equals(after.returns)


def test_the_index_is_bought_and_held_but_never_traded_by_the_model() -> None:
    predictions, bars = _path()
    index = _bars("00DSEX", [(D1, 1000.0, 1000.0), (D2, 1000.0, 1050.0), (D3, 1100.0, 1100.0),
                             (D4, 1200.0, 1210.0)], volume=5e9)
    signal_on_index = pd.DataFrame({"symbol": ["00DSEX"], "date": [D1], "probability": [0.9]})
    result = backtest.run(pd.concat([predictions, signal_on_index]), pd.concat([bars, index]), 0.0, "00DSEX")
    assert set(result.fills["symbol"]) == {"AAA"}
    # bought at D2's open 1000, sold at D4's close 1210, paying the tightest half-spread each way
    spread = backtest.SPREAD_BUCKETS[0][1] / 1e4
    assert result.curves["index_buy_and_hold"].iloc[-1] == pytest.approx((1 - spread) * 1.21 * (1 - spread), rel=1e-3)
    without = backtest.run(predictions, bars, 0.0, "00DSEX")
    assert "index_buy_and_hold" not in without.curves
    assert not any(k.startswith("index_") for k in without.summary)


@pytest.mark.usefixtures("no_spread")
def test_a_signal_superseded_before_the_instrument_trades_again_is_not_acted_on() -> None:
    # no bar on D3 (no trade): the D2 and D3 signals would both fill at D4's open; only D3's, the latest, does
    bars = _bars("AAA", [(D1, 100.0, 100.0), (D2, 110.0, 110.0), (D4, 121.0, 133.1)])
    predictions = pd.DataFrame({"symbol": "AAA", "date": [D1, D2, D3], "probability": [0.9, 0.1, 0.9]})
    result = backtest.run(predictions, bars, COST_BPS, "00DSEX")
    assert result.fills["date"].tolist() == [D1, D3]
    # held from D2's open to D4's open, then on to D4's close: no exit in between, one exit at the end
    assert result.returns["long_flat"].tolist() == pytest.approx([0.1 - 0.01, 0.0, 0.1 - 0.01])


def test_the_bars_must_reach_past_the_last_signal() -> None:
    predictions, bars = _path()
    with pytest.raises(ValueError, match="session after"):
        backtest.run(predictions, bars[bars["date"] < D4], 0.0, "00DSEX")


def test_report_writes_the_picture_and_the_page(tmp_path) -> None:
    predictions, bars = _path()
    result = backtest.run(predictions, bars, COST_BPS, "00DSEX")
    png, page = reports.backtest_report(result, tmp_path / "backtest.png", tmp_path / "backtest.html")
    assert png.stat().st_size > 0
    text = page.read_text()
    assert "long_flat" in text and "decile_long_short" in text and "100 bps" in text
