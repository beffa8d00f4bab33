"""Data-quality rules for raw DSE bars: every row is kept, flagged or rejected, with the rule that decided.

The rules, their actions and limits are declared once in :mod:`rules` (shared with
wire validation); this module applies the ingest ones, vectorised over whole files.
Kept rows carry the names of the flag rules that fired in ``flags`` ('|'-joined),
rejected rows go to the rejects file with the rule and a reason.
``read == clean + flagged + rejected`` holds for every ingest.

Each row carries its source's price basis (raw or back-adjusted, see :mod:`formats`); an
instrument's stored series is one basis, since splicing one onto the other fakes a jump at
every bonus or rights issue between them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dse_platform.data.instruments import INDEX_SYMBOLS
from dse_platform.data.raw_file import DEFAULT_BASIS, RAW_COLUMNS, ParsedFile, PriceBasis
from dse_platform.data.rules import (
    MIN_TRADING_INSTRUMENTS,
    PRICE_COLS,
    PRICE_JUMP_LIMIT,
    latest_allowed_date,
    rule_names,
)
from dse_platform.data.trading_calendar import TradingCalendar, today_dhaka

FLAG_RULES = rule_names("ingest", "flag")
REJECT_RULES = rule_names("ingest", "reject")
NUMERIC_COLS = [*PRICE_COLS, "volume", "trades", "value_mn", "ycp"]
#: priority when the same (symbol, date) comes from several layouts: the richest source wins
SOURCE_PRIORITY = {"dse-eod": 0, "day-end": 1, "investing": 2}


@dataclass(frozen=True)
class BasisClash:
    """An instrument's rows of one file, all rejected for their price basis, and why."""

    path: Path
    symbol: str
    reason: str
    rows: int


@dataclass
class RuleOutcome:
    """Kept rows (canonical layout), rejected rows (raw text kept), the calendar learned, and the files'
    instruments refused for their price basis."""

    kept: pd.DataFrame
    rejects: pd.DataFrame
    calendar: TradingCalendar
    basis_clashes: list[BasisClash] = field(default_factory=list)


def _reject(frame: pd.DataFrame, mask: pd.Series, rule: str, reason: str | pd.Series) -> pd.DataFrame:
    if rule not in REJECT_RULES:
        raise ValueError(f"rule {rule!r} is not an ingest reject rule; declare it in data/rules.py")
    out = frame.loc[mask].copy()
    out["rule"] = rule
    out["reason"] = reason if isinstance(reason, str) else reason.loc[mask]
    return out


def _parse_dates(text: pd.Series) -> pd.Series:
    us = pd.to_datetime(text.str.strip(), format="%m/%d/%Y", errors="coerce")
    iso = pd.to_datetime(text.str.strip(), format="%Y-%m-%d", errors="coerce")
    return us.fillna(iso)


def check_bars(bars: pd.DataFrame, reference: pd.DataFrame, source_format: str,
               today: dt.date | None = None) -> RuleOutcome:
    """The ingest rules over bars that are already numbers (e.g. the stream's final bars), as one file.

    ``bars`` has the canonical columns and ``source_file``; it goes through `apply_rules` in the
    raw text layout, so folded bars get exactly the flags and rejects ingest would give them.
    A bar without a ``price_basis`` is raw (the stream carries DSE's traded prices): folded beside a
    stored bar of an adjusted instrument, both are rejected for ``price_basis_mismatch``.
    """
    text = bars.assign(date=bars["date"].astype(str), source_line=np.arange(1, len(bars) + 1),
                       source_format=source_format, ycp="")
    for col in NUMERIC_COLS[:-1]:
        values = text[col].astype("Float64") if col in text else pd.Series(pd.NA, index=text.index)
        text[col] = values.astype(object).map(lambda v: "" if pd.isna(v) else repr(float(v)))
    parsed = ParsedFile(Path(source_format), source_format, text.reindex(columns=RAW_COLUMNS))
    return apply_rules([parsed], reference, today)


def _basis_conflicts(raw: pd.DataFrame, origin: pd.Series, stored: Mapping[str, PriceBasis]) -> pd.Series:
    """Why each row's price basis clashes ('' where it does not): its instrument comes in both bases in the input
    (every row of it: neither series is the right one to keep), or the store holds the instrument in the other.
    ``origin`` names each row's file (its path where two files share a name)."""
    held = raw["symbol"].map(dict(stored))
    unlike_store = (held.notna() & (held != raw["price_basis"])).to_numpy(bool)
    reason = pd.Series("", index=raw.index)
    reason[unlike_store] = (raw.loc[unlike_store, "symbol"] + " is " + raw.loc[unlike_store, "price_basis"]
                            + " here but the store holds it " + held[unlike_store])
    bases = raw.groupby("symbol")["price_basis"].nunique()
    for symbol in bases.index[bases > 1]:
        rows = raw["symbol"] == symbol
        files = origin[rows].groupby(raw.loc[rows, "price_basis"]).unique()
        for basis in files.index:
            (other,) = files.index.drop(basis)
            names = sorted(files[other])
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            reason[rows & (raw["price_basis"] == basis)] = f"{symbol} is {basis} here but {other} in {shown}"
    return reason


def apply_rules(files: list[ParsedFile], reference: pd.DataFrame, today: dt.date | None = None,
                stored_basis: Mapping[str, PriceBasis] | None = None) -> RuleOutcome:
    """Run every rule over the parsed files; ``reference`` maps symbol -> sector, category.

    ``stored_basis`` is the price basis the store holds per instrument: rows in the other are refused.
    """
    today = today or today_dhaka()
    rejects: list[pd.DataFrame] = []
    for parsed in files:
        if parsed.truncated_lines:
            rejects.append(pd.DataFrame({
                "symbol": "", "source_file": parsed.path.name, "source_format": parsed.fmt,
                "source_line": [n for n, _ in parsed.truncated_lines],
                "raw": [text for _, text in parsed.truncated_lines], "rule": "truncated_row",
                "reason": "fewer fields than the header names"}))
    raw = pd.concat([p.rows for p in files], ignore_index=True) if files else pd.DataFrame()
    if raw.empty:
        return RuleOutcome(raw, pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(),
                           TradingCalendar((), ()))
    raw = raw.astype({c: "string" for c in [*NUMERIC_COLS, "date", "symbol"]})
    # the row as read, for the rejects file (column-wise: a row-wise join is ~50 s on the full history)
    raw["raw"] = raw["date"].fillna("").str.cat([raw[c].fillna("") for c in NUMERIC_COLS], sep=",")

    # -- price basis: one per instrument ---------------------------------------------------------
    raw["price_basis"] = raw["price_basis"].fillna(DEFAULT_BASIS).astype("string")
    file_no = np.repeat(np.arange(len(files)), [len(p.rows) for p in files])
    shared = pd.Series([p.path.name for p in files]).duplicated(keep=False)
    labels = np.array([str(p.path) if same else None for p, same in zip(files, shared, strict=True)], dtype=object)
    clash = _basis_conflicts(raw, pd.Series(labels[file_no], index=raw.index).fillna(raw["source_file"]),
                             stored_basis or {})
    clashing = clash != ""
    per_file = pd.DataFrame({"file": file_no[clashing.to_numpy()], "symbol": raw.loc[clashing, "symbol"],
                             "reason": clash[clashing]})
    basis_clashes = [BasisClash(files[f].path, symbol, reason, n) for (f, symbol), (reason, n)
                     in per_file.groupby(["file", "symbol"])["reason"].agg(["first", "size"]).iterrows()]
    rejects.append(_reject(raw, clashing, "price_basis_mismatch", clash))
    raw = raw.loc[~clashing]

    # -- cell parsing ------------------------------------------------------------------------------
    raw["day"] = _parse_dates(raw["date"])
    bad_date = raw["day"].isna()
    rejects.append(_reject(raw, bad_date, "bad_date", "date '" + raw["date"].fillna("") + "' is not MM/DD/YYYY"))
    raw = raw.loc[~bad_date]
    bad_cell = pd.Series("", index=raw.index)
    for col in NUMERIC_COLS:
        text = raw[col].fillna("").str.strip().replace({"--": "0"})
        values = pd.to_numeric(text.astype(object), errors="coerce").astype("float64")
        nonfinite = ~np.isfinite(values) & values.notna()
        bad = ((text != "") & values.isna()) | nonfinite
        bad_cell = bad_cell.where(~bad | (bad_cell != ""), f"{col}=" + raw[col].fillna(""))
        raw[col] = values.where(~nonfinite)
    is_bad = bad_cell != ""
    rejects.append(_reject(raw, is_bad, "bad_number", "not a number: " + bad_cell))
    raw = raw.loc[~is_bad]

    # day-end archive: an instrument that did not trade has zero prices and close = YCP
    untraded = (raw["source_format"] == "day-end") & (raw["open"].fillna(0) == 0) & (raw["high"].fillna(0) == 0)
    for col in ("open", "high", "low"):
        raw.loc[untraded, col] = raw.loc[untraded, "close"]
    raw.loc[untraded, "volume"] = 0.0

    missing = raw["close"].isna() | raw[["open", "high", "low"]].isna().any(axis=1)
    rejects.append(_reject(raw, missing, "missing_field", "an open/high/low/close cell is empty"))
    raw = raw.loc[~missing]
    non_pos = (raw[list(PRICE_COLS)] <= 0).any(axis=1)
    rejects.append(_reject(raw, non_pos, "non_positive_price", "a price is zero or negative"))
    raw = raw.loc[~non_pos]
    inverted = raw["high"] < raw["low"]
    rejects.append(_reject(raw, inverted, "high_below_low",
                           "high " + raw["high"].astype(str) + " < low " + raw["low"].astype(str)))
    raw = raw.loc[~inverted]
    latest = latest_allowed_date(today)
    future = raw["day"].dt.date > latest
    rejects.append(_reject(raw, future, "future_date", f"date after {latest} (today in Asia/Dhaka: {today})"))
    raw = raw.loc[~future]

    # -- duplicates: keep the row from the richest source, then the earliest line ------------------
    raw["priority"] = raw["source_format"].map(SOURCE_PRIORITY)
    raw = raw.sort_values(["symbol", "day", "priority", "source_file", "source_line"], kind="stable")
    dup = raw.duplicated(["symbol", "day"], keep="first")
    rejects.append(_reject(raw, dup, "duplicate", "another row has the same (symbol, date)"))
    raw = raw.loc[~dup].copy()

    # indices: the EOD 'volume' is market turnover in taka and there is no trade count
    is_index = raw["symbol"].isin(INDEX_SYMBOLS)
    eod_index = is_index & (raw["source_format"] == "dse-eod")
    raw.loc[eod_index, "value_mn"] = raw.loc[eod_index, "volume"] / 1e6
    raw.loc[is_index, ["volume", "trades"]] = np.nan

    # -- per-instrument rules over the time-ordered series -----------------------------------------
    flags = {rule: pd.Series(False, index=raw.index) for rule in FLAG_RULES}
    grouped = raw.groupby("symbol", sort=False)
    prev_close = grouped["close"].shift(1)
    flat = (raw["open"] == raw["high"]) & (raw["high"] == raw["low"]) & (raw["low"] == raw["close"])
    same = raw["close"] == prev_close
    # stocks: nothing traded (volume 0 and trade 0); indices: turnover 0 or copied from the day before
    prev_value = grouped["value_mn"].shift(1)
    stock_idle = raw["volume"].eq(0) & raw["trades"].fillna(0).eq(0)
    index_idle = raw["value_mn"].fillna(0).eq(0) | raw["value_mn"].eq(prev_value)
    flags["synthetic"] = flat & same & np.where(is_index, index_idle, stock_idle)
    flags["volume_missing"] = raw["volume"].isna() & ~is_index
    flags["ohlc_outside_range"] = ((raw[["open", "close"]].max(axis=1) > raw["high"])
                                   | (raw[["open", "close"]].min(axis=1) < raw["low"]))
    move = (raw["close"] / prev_close - 1).abs()
    flags["price_jump"] = (move > PRICE_JUMP_LIMIT) & ~flags["synthetic"]

    # -- calendar: sessions are days with real trading ---------------------------------------------
    real = raw.loc[~flags["synthetic"]]
    traded = real.loc[~real["symbol"].isin(INDEX_SYMBOLS) & (real["volume"].fillna(0) > 0)]
    counts = traded.groupby("day")["symbol"].nunique()
    index_days = set(real.loc[real["symbol"].isin(INDEX_SYMBOLS), "day"])
    # small inputs (a few instruments) need a proportionate threshold
    threshold = min(MIN_TRADING_INSTRUMENTS, max(1, int(np.ceil(0.2 * traded["symbol"].nunique()))))
    session_days = sorted({d.date() for d in counts[counts >= threshold].index}
                          | {d.date() for d in index_days})
    coverage = []
    for _, part in raw.groupby("source_format"):
        by_file = part.groupby("source_file")["day"]
        if part["source_format"].iloc[0] == "dse-eod":
            coverage.append((by_file.min().min().date(), by_file.max().max().date()))
        else:
            coverage += [(a.date(), b.date()) for a, b in zip(by_file.min(), by_file.max(), strict=True)]
    calendar = TradingCalendar(tuple(session_days), tuple(sorted(coverage)))
    session_set = set(session_days)
    off_day = ~raw["day"].dt.date.isin(session_set)
    rejects.append(_reject(raw, off_day, "non_trading_day",
                           "no DSE session on " + raw["day"].dt.strftime("%Y-%m-%d (%A)")))
    flags["weekend_session"] = raw["day"].dt.weekday.isin([4, 5])
    known = set(reference.index) | INDEX_SYMBOLS
    flags["unknown_symbol"] = ~raw["symbol"].isin(known)

    flag_text = pd.Series("", index=raw.index)
    for rule in FLAG_RULES:
        flag_text = flag_text.where(~flags[rule], flag_text + np.where(flag_text == "", "", "|") + rule)
    raw["flags"] = flag_text
    kept = raw.loc[~off_day]
    kept = pd.DataFrame({
        "symbol": kept["symbol"].astype(str), "date": kept["day"].dt.date,
        **{c: kept[c].astype(float) for c in PRICE_COLS},
        "volume": kept["volume"].astype(float), "trades": kept["trades"].astype("Int64"),
        "value_mn": kept["value_mn"].astype(float),
        "sector": kept["symbol"].map(reference["sector"]).where(~kept["symbol"].isin(INDEX_SYMBOLS), "Index"),
        "category": kept["symbol"].map(reference["category"]),
        "quality_flags": kept["flags"].astype(str), "source_file": kept["source_file"].astype(str),
        "price_basis": kept["price_basis"].astype(str),
    }).reset_index(drop=True)
    reject_cols = ["symbol", "date", "source_file", "source_format", "source_line", "raw", "rule", "reason"]
    parts = [r.reindex(columns=reject_cols).astype(object) for r in rejects if len(r)]
    all_rejects = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=reject_cols)
    return RuleOutcome(kept, all_rejects.astype({"source_line": "Int64"}), calendar, basis_clashes)
