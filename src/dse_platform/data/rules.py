"""The one declaration of every named data-quality rule and the limits the rules share.

Ingest (:mod:`dse_platform.data.quality`, vectorised over raw files) and wire validation
(:mod:`dse_platform.serving.validation`, per Kafka record) both take their rule names and
limits from here, so a bar refused on one path is refused, for the same named reason, on
the other. A rule applies at ``ingest``, on the ``wire``, or both; ``reject`` drops the
row (a rejects-file row or a dead letter), ``flag`` keeps it with the rule's name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

Stage = Literal["ingest", "wire"]
Action = Literal["reject", "flag"]

#: the price cells every bar has; each must be present, a finite number and positive
PRICE_COLS: tuple[str, ...] = ("open", "high", "low", "close")
#: how far after today (Asia/Dhaka) a bar may be dated. Zero: DSE trades 10:00-14:30 Dhaka time and every
#: producer (files, replay, the live page's as-of) dates bars in Asia/Dhaka, so a real session's bar is never
#: dated after today, and clock skew of minutes cannot move a 14:30 bar past midnight; a later date is a bug
FUTURE_DATE_SLACK = dt.timedelta(days=0)
#: DSE's circuit breakers cap a day's move at 10%; a bigger close-to-close jump is not a trading day's move
PRICE_JUMP_LIMIT = 0.25
#: a day is a session when at least this many instruments really traded (or an index moved)
MIN_TRADING_INSTRUMENTS = 20
#: a bar is ~200 bytes of JSON; a Kafka value this big is not one
MAX_VALUE_BYTES = 64 * 1024
#: what a DSE trading code looks like on the wire (upper case, digits and a few punctuation marks)
SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9&()._-]{0,29}$"


@dataclass(frozen=True)
class Rule:
    """A named check: where it runs, what it does to a row that fails it, and its limit if it has one."""

    name: str
    action: Action
    stages: frozenset[Stage]
    description: str
    limit: float | int | str | dt.timedelta | None = None


_BOTH: frozenset[Stage] = frozenset({"ingest", "wire"})
_INGEST: frozenset[Stage] = frozenset({"ingest"})
_WIRE: frozenset[Stage] = frozenset({"wire"})

#: every rule, in the order the report lists them (ingest's check order, wire-only rules where they run)
RULES: tuple[Rule, ...] = (
    Rule("empty_value", "reject", _WIRE, "the Kafka record has no value"),
    Rule("too_large", "reject", _WIRE, "the value is bigger than any bar can be", MAX_VALUE_BYTES),
    Rule("not_utf8", "reject", _WIRE, "the value is not UTF-8 text"),
    Rule("invalid_json", "reject", _WIRE, "the value is not JSON (NaN and Infinity included)"),
    Rule("not_an_object", "reject", _WIRE, "the JSON value is not an object"),
    Rule("unknown_schema_version", "reject", _WIRE, "the record declares a schema version this job cannot read"),
    Rule("truncated_row", "reject", _INGEST, "the CSV line has fewer fields than the header names"),
    Rule("price_basis_mismatch", "reject", _INGEST,
         "the instrument comes both raw and back-adjusted (within the input, or against what the store holds)"),
    Rule("bad_symbol", "reject", _WIRE, "the symbol is not a DSE trading code", SYMBOL_PATTERN),
    Rule("bad_date", "reject", _BOTH, "the date does not parse"),
    Rule("bad_number", "reject", _BOTH,
         "a numeric cell is not a finite number, is beyond any DSE figure, or is a negative volume"),
    Rule("missing_field", "reject", _BOTH, "a required field (a price, the symbol or the date) is empty"),
    Rule("non_positive_price", "reject", _BOTH, "a price is zero or negative"),
    Rule("high_below_low", "reject", _BOTH, "the high is below the low"),
    Rule("future_date", "reject", _BOTH, "the date is after today in Asia/Dhaka plus the slack", FUTURE_DATE_SLACK),
    Rule("duplicate", "reject", _BOTH, "another bar has the same (symbol, date)"),
    Rule("out_of_order", "reject", _WIRE, "the bar is older than the instrument's latest one"),
    Rule("unparseable", "reject", _WIRE, "parsing the record raised an error no other rule names (a catch-all)"),
    Rule("non_trading_day", "reject", _INGEST, "no DSE session on that date"),
    Rule("synthetic", "flag", _INGEST, "a flat row copied from the previous close with no trading"),
    Rule("volume_missing", "flag", _INGEST, "a stock's volume cell is empty"),
    Rule("ohlc_outside_range", "flag", _INGEST, "the open or close lies outside the high-low range"),
    Rule("price_jump", "flag", _INGEST, "a close-to-close move no trading day allows", PRICE_JUMP_LIMIT),
    Rule("weekend_session", "flag", _INGEST, "a bar dated on a Friday or Saturday"),
    Rule("unknown_symbol", "flag", _INGEST, "the code is neither in the instrument reference nor an index"),
)

RULE_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}


def rule_names(stage: Stage, action: Action | None = None) -> tuple[str, ...]:
    """Names of the rules that run at ``stage`` (only those with ``action`` when given), in declaration order."""
    return tuple(r.name for r in RULES if stage in r.stages and (action is None or r.action == action))


def latest_allowed_date(today: dt.date) -> dt.date:
    """The last date a bar may carry on ``today`` (Asia/Dhaka); later ones fail ``future_date``."""
    return today + FUTURE_DATE_SLACK
