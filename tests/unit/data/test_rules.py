"""One rule set: the ingest and the wire refuse the same bars, for the same named reason, at the same limits."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dse_platform.data import quality
from dse_platform.data.formats import parse_file
from dse_platform.data.rules import PRICE_COLS, RULE_BY_NAME, RULES, latest_allowed_date, rule_names
from dse_platform.serving import validation

TODAY = dt.date(2025, 10, 22)  # a Wednesday session
LATEST = latest_allowed_date(TODAY)
#: one good bar, as its cells; the cases below change one cell each
BAR: dict[str, Any] = {"date": "2025-10-21", "open": 10.0, "high": 11.0, "low": 9.5, "close": 10.5, "volume": 100.0}
NO_REFERENCE = pd.DataFrame(columns=["sector", "category"])


def ingest_verdict(change: dict[str, Any]) -> str | None:
    """The rule the ingest rejects the changed bar with (None: kept), beside a good bar of the day before."""
    cells = {**BAR, **change}
    line = ",".join("" if cells[c] is None else str(cells[c]) for c in ("date", *PRICE_COLS, "volume")) + ",5"
    text = f"date,open,high,low,close,volume,trade\n2025-10-20,10,11,9.5,10.5,100,5\n{line}\n"
    outcome = quality.apply_rules([parse_file(Path("BATBC.csv"), text)], NO_REFERENCE, TODAY)
    rejected = outcome.rejects.loc[outcome.rejects["source_line"] == 3, "rule"].tolist()
    kept = outcome.kept["date"].astype(str).tolist()
    assert len(rejected) + kept.count(str(cells["date"])) == 1, (rejected, kept)
    return rejected[0] if rejected else None


def wire_verdict(change: dict[str, Any]) -> str | None:
    """The rule wire validation rejects the same bar with (None: accepted)."""
    record = {"symbol": "BATBC", **{k: v for k, v in {**BAR, **change}.items() if v is not None}}
    try:
        validation.parse(json.dumps(record).encode(), "bar", TODAY)
    except validation.Rejected as exc:
        return exc.reason
    return None


@pytest.mark.parametrize(("change", "rule"), [
    ({}, None),
    ({"date": str(LATEST)}, None),
    ({"date": str(LATEST + dt.timedelta(days=1))}, "future_date"),
    ({"date": str(LATEST + dt.timedelta(days=400))}, "future_date"),
    ({"date": "2025-02-30"}, "bad_date"),
    ({"close": "abc"}, "bad_number"),
    ({"close": None}, "missing_field"),
    ({"high": 9.0}, "high_below_low"),
    *[({col: 0}, "non_positive_price") for col in PRICE_COLS],
    *[({col: -1.5}, "non_positive_price") for col in PRICE_COLS],
])
def test_ingest_and_wire_agree(change: dict[str, Any], rule: str | None) -> None:
    assert ingest_verdict(change) == rule
    assert wire_verdict(change) == rule


def test_the_future_date_limit_is_the_declared_slack() -> None:
    limit = RULE_BY_NAME["future_date"].limit
    assert isinstance(limit, dt.timedelta) and TODAY + limit == LATEST
    assert ingest_verdict({"date": str(TODAY)}) is None and wire_verdict({"date": str(TODAY)}) is None


def test_rule_names_are_unique_and_described() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    assert all(r.stages and r.description and r.action in ("reject", "flag") for r in RULES)


def test_shared_rules_carry_the_same_name_on_both_paths() -> None:
    shared = {r.name for r in RULES if r.stages == {"ingest", "wire"}}
    assert shared <= set(quality.REJECT_RULES) & set(validation.WIRE_RULES)
    assert not set(quality.FLAG_RULES) & set(validation.WIRE_RULES)  # a wire record is never kept with a flag
    assert set(quality.REJECT_RULES) | set(quality.FLAG_RULES) == set(rule_names("ingest"))
    assert {r.name for r in RULES} == set(rule_names("ingest")) | set(validation.WIRE_RULES)


def test_price_jump_flags_a_move_beyond_the_limit_only() -> None:
    limit = RULE_BY_NAME["price_jump"].limit
    assert isinstance(limit, float)
    inside, beyond = round(10 * (1 + limit) - 0.01, 2), round(10 * (1 + limit) + 0.01, 2)
    text = "date,open,high,low,close,volume,trade\n" + "".join(
        f"2025-10-{d},{c},{c},{c},{c},100,5\n" for d, c in ((19, 10), (20, inside), (21, 10), (22, beyond)))
    kept = quality.apply_rules([parse_file(Path("BATBC.csv"), text)], NO_REFERENCE, TODAY).kept
    flagged = kept["quality_flags"].str.contains("price_jump")
    # 10 -> inside is within the limit; inside -> 10 falls by less; 10 -> beyond is past it
    assert kept.loc[flagged, "date"].astype(str).tolist() == ["2025-10-22"]
