"""The pages' own arithmetic: rolling accuracy beside the baselines, and the lag buckets' names."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from dse_platform.dashboard import queries
from dse_platform.dashboard.views import model, pipeline


def _daily() -> pd.DataFrame:
    days = [dt.date(2024, 1, 7) + dt.timedelta(days=i) for i in range(3)]
    return pd.DataFrame({"date": days * 2, "role": ["production"] * 3 + ["challenger"] * 3,
                         "model_version": ["3"] * 3 + ["4"] * 3, "outcomes": [10, 10, 20, 10, 10, 20],
                         "correct": [6, 8, 10, 5, 5, 10], "went_up": [2, 3, 16, 2, 3, 16]})


def test_rolling_accuracy_sums_counts_before_dividing() -> None:
    rolling = model.rolling_accuracy(_daily(), sessions=2)
    production = rolling[rolling["role"] == "production"].reset_index(drop=True)
    assert production["accuracy"].tolist() == pytest.approx([0.6, 0.7, 18 / 30])
    assert production["always_up"].tolist() == pytest.approx([0.2, 0.25, 19 / 30])
    assert production["majority"].tolist() == pytest.approx([0.8, 0.75, 19 / 30])


def test_no_outcomes_give_no_rolling_accuracy() -> None:
    assert model.rolling_accuracy(_daily().iloc[:0]).empty


def test_lag_buckets_are_named_and_read_as_quantiles() -> None:
    labels = pipeline.lag_labels()
    assert len(labels) == len(queries.LAG_EDGES_MS) + 1
    assert (labels[0], labels[3], labels[-1]) == ("< 0.25 s", "1 s-2 s", ">= 5 min")
    buckets = pd.DataFrame({"bucket": [0, 3, 9], "rows": [50, 45, 5]})
    assert pipeline.lag_quantile(buckets, 0.5) == "< 0.25 s"
    assert pipeline.lag_quantile(buckets, 0.95) == "1 s-2 s"
    assert pipeline.lag_quantile(buckets, 0.99) == ">= 5 min"


def test_the_live_table_shows_monitorings_figures_with_the_interval() -> None:
    performance = pd.DataFrame([{"role": "production", "model_version": "3", "dates": 21, "outcomes": 8240,
                                 "auc": 0.626, "auc_yesterday_sign": 0.542, "auc_instrument_rate": 0.602,
                                 "strongest": "instrument_rate", "edge": 0.024, "edge_low": 0.003,
                                 "edge_high": 0.045, "accuracy": 0.602, "accuracy_always_up": 0.376,
                                 "accuracy_yesterday_sign": 0.565, "accuracy_majority_hindsight": 0.624}])
    shown = model.live_table(performance).iloc[0]
    assert shown["difference to the strongest"] == "+0.024 [+0.003, +0.045]"
    assert shown["accuracy"] == pytest.approx(60.2) and shown["acc.: yesterday's sign"] == pytest.approx(56.5)
