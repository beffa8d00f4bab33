"""The feature declaration: names, drift set, lookback and version all derive from FEATURES."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from dse_platform.model import features
from tests.unit.model.synthetic import random_bars

CALENDAR_FEATURES = {"days_since_prev", "dow_sin", "dow_cos", "month_sin", "month_cos"}


def test_names_and_drift_set_follow_the_declarations() -> None:
    assert [spec.name for spec in features.FEATURES] == features.FEATURE_NAMES
    assert len(set(features.FEATURE_NAMES)) == len(features.FEATURE_NAMES)
    assert [spec.name for spec in features.FEATURES if spec.drift] == features.DRIFT_FEATURES
    assert set(features.FEATURE_NAMES) - set(features.DRIFT_FEATURES) == CALENDAR_FEATURES
    assert list(features.compute(random_bars("AAA", 5, seed=1)).columns) == [*features.FEATURE_NAMES, "valid"]


def test_a_window_below_one_bar_is_refused() -> None:
    with pytest.raises(ValueError, match="window must be at least 1"):
        features.FeatureSpec("x", 0, "nothing", True)


@pytest.mark.parametrize("spec", features.FEATURES, ids=lambda spec: spec.name)
def test_each_window_is_exactly_the_bars_the_feature_reads(spec: features.FeatureSpec) -> None:
    bars = random_bars("AAA", 80, seed=2)
    full = features.compute(bars)[spec.name].iloc[-1]
    enough = features.compute(bars.tail(spec.window).reset_index(drop=True))[spec.name].iloc[-1]
    assert np.isfinite(full) and enough == full  # bit for bit: nothing older matters
    if spec.window > 1:
        short = features.compute(bars.tail(spec.window - 1).reset_index(drop=True))[spec.name].iloc[-1]
        assert short != full, f"{spec.name} gets its value from fewer than {spec.window} bars"


def test_lookback_is_the_longest_window_and_decides_validity() -> None:
    assert max(spec.window for spec in features.FEATURES) == features.LOOKBACK
    bars = random_bars("AAA", features.LOOKBACK, seed=3)
    valid = features.compute(bars)["valid"].to_numpy()
    assert valid[-1] and not valid[:-1].any()


def test_version_is_the_fingerprint_of_declarations_code_and_constants() -> None:
    version = features.fingerprint(features.FEATURES, features.COMPUTE_PATH, features.COMPUTE_CONSTANTS)
    assert version == features.FEATURE_VERSION
    assert len(version) == 12 and int(version, 16) >= 0


def test_a_changed_window_changes_the_version() -> None:
    longer = tuple(replace(s, window=s.window + 1) if s.name == "ma_ratio_50" else s for s in features.FEATURES)
    assert features.fingerprint(longer, features.COMPUTE_PATH, features.COMPUTE_CONSTANTS) != features.FEATURE_VERSION


def test_a_changed_formula_or_constant_changes_the_version() -> None:
    def _lag(values: np.ndarray, k: int) -> np.ndarray:  # the same name, another body
        return np.roll(values, k)

    code = tuple(_lag if f is features._lag else f for f in features.COMPUTE_PATH)
    assert code != features.COMPUTE_PATH
    assert features.fingerprint(features.FEATURES, code, features.COMPUTE_CONSTANTS) != features.FEATURE_VERSION
    constants = tuple(0.3 if c == features.RETURN_CLIP else c for c in features.COMPUTE_CONSTANTS)
    assert features.fingerprint(features.FEATURES, features.COMPUTE_PATH, constants) != features.FEATURE_VERSION


def test_undrifted_features_are_constant_within_a_session_and_drifted_ones_are_not() -> None:
    bars = pd.concat([random_bars(f"S{i}", 60, seed=10 + i, volatility=0.004 * (i + 1), tick=0.5) for i in range(5)],
                     ignore_index=True)
    feats = features.compute(bars)
    last = feats[bars["date"] == bars["date"].max()]
    assert len(last) == 5 and last["valid"].all()
    distinct = last[features.FEATURE_NAMES].nunique()
    assert (distinct[sorted(CALENDAR_FEATURES)] == 1).all()
    assert (distinct[features.DRIFT_FEATURES] > 1).all(), distinct[features.DRIFT_FEATURES]


def test_encoded_features_are_named_and_round_trip_bit_for_bit() -> None:
    row = features.compute(random_bars("AAA", 60, seed=4)).iloc[-1]
    text = features.encode(row)
    assert list(json.loads(text)) == features.FEATURE_NAMES
    decoded = features.decode([text])
    assert list(decoded.columns) == features.FEATURE_NAMES
    np.testing.assert_array_equal(decoded.iloc[0].to_numpy(), row[features.FEATURE_NAMES].to_numpy(float))


def test_decoding_reads_by_name_not_position() -> None:
    shuffled = json.dumps({name: float(i) for i, name in reversed(list(enumerate(features.FEATURE_NAMES)))})
    decoded = features.decode([shuffled, shuffled], ["gap", "ret_1"])
    assert decoded.to_dict("list") == {"gap": [14.0, 14.0], "ret_1": [0.0, 0.0]}
    assert features.decode([]).shape == (0, len(features.FEATURE_NAMES))


def test_decoding_features_of_another_definition_fails_clearly() -> None:
    with pytest.raises(ValueError, match=r"stored features lack \['gap'\]"):
        features.decode([json.dumps({"ret_1": 0.1})], ["ret_1", "gap"])
