"""``dse ingest``: raw DSE files -> the canonical bar store, with a data-quality report.

Files are recognised by header (see :mod:`formats`); the instrument reference file
(``Ticker, MarketName, GroupName``, see :mod:`instruments`) supplies sector and category. Rows go through
:mod:`quality`; the store is swapped in atomically (see :mod:`store`).

Each file has a price basis (raw or back-adjusted, see :func:`formats.file_price_basis`). An instrument
that comes in both, or in the other basis than the store holds it, is refused: its rows are rejected, the
file's other instruments go in, and the store keeps what it held for it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from dse_platform.data import store
from dse_platform.data.formats import ColumnMap, parse_file
from dse_platform.data.instruments import DEFAULT_REFERENCE, INDEX_SYMBOLS, is_reference, load_reference
from dse_platform.data.quality import FLAG_RULES, REJECT_RULES, BasisClash, apply_rules
from dse_platform.data.raw_file import ParsedFile, PriceBasis, read_text
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.errors import PlatformError

#: layouts whose single trading code comes from the file name (not checked against the reference)
PER_INSTRUMENT = {"dse-eod", "ohlcv", "investing"}
BASIS_FIX = ("keep one price basis per instrument: ingest only one of its series (--price-basis declares the basis "
             "of files that do not name it), or ingest its whole history in one basis into a fresh store (--store DIR)")


@dataclass
class IngestResult:
    report: dict
    store: Path


def discover(paths: Iterable[Path]) -> list[Path]:
    """CSV files (plain or .gz) under the given files/folders, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise PlatformError(f"{path} does not exist", "pass a data file or folder that exists")
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith((".csv", ".csv.gz")))
        else:
            found.append(path)
    if not found:
        raise PlatformError(f"no .csv or .csv.gz files under {', '.join(map(str, paths))}",
                            "point `dse ingest` at the folder holding the DSE files")
    return found


def _check_symbols(parsed: ParsedFile, reference: pd.DataFrame) -> None:
    """A multi-instrument file none of whose codes is a DSE code is another market's file: refuse it."""
    if parsed.fmt in PER_INSTRUMENT or reference.empty or parsed.rows.empty:
        return
    codes = set(parsed.rows["symbol"])
    if not codes & (set(reference.index) | INDEX_SYMBOLS):
        sample = ", ".join(sorted(codes)[:5])
        raise PlatformError(f"{parsed.path}: none of its {len(codes)} trading codes ({sample}, ...) is a DSE code",
                            "this looks like another exchange's file; ingest only DSE data")


def _basis_refusals(clashes: list[BasisClash], held: dict[str, PriceBasis]) -> list[tuple[Path, str, PlatformError]]:
    """One refusal per file and instrument whose rows were rejected for their price basis."""
    return [(c.path, c.symbol, PlatformError(
        f"{c.path}: {c.reason}: its {c.rows} row(s) are rejected (price_basis_mismatch), "
        + (f"the store keeps its {held[c.symbol]} series" if c.symbol in held else f"{c.symbol} is not stored"),
        BASIS_FIX)) for c in clashes]


def _stored_series(store_dir: Path, symbols: list[str],
                   calendar: TradingCalendar) -> tuple[pd.DataFrame, TradingCalendar]:
    """The store's bars of instruments refused for their price basis (a refusal leaves them as they were), and
    the run's calendar with their sessions and covered stretches added."""
    bars = store.read_bars(store_dir, symbols=symbols)
    if bars.empty:
        return bars, calendar
    first, last = min(bars["date"]), max(bars["date"])
    before = store.read_calendar(store_dir)
    sessions = set(calendar.sessions) | {d for d in before.sessions if first <= d <= last}
    coverage = set(calendar.coverage) | {(max(a, first), min(b, last)) for a, b in before.coverage
                                         if a <= last and b >= first}
    return bars, TradingCalendar(tuple(sorted(sessions)), tuple(sorted(coverage)))


def build_report(files: list[ParsedFile], outcome, read: int, refused: list[dict[str, str]]) -> dict:
    kept, rejects = outcome.kept, outcome.rejects
    flagged = kept["quality_flags"] != ""
    by_rule = {rule: int(kept["quality_flags"].str.contains(rf"(?:^|\|){rule}(?:\||$)").sum()) for rule in FLAG_RULES}
    by_rule.update({rule: int((rejects["rule"] == rule).sum()) for rule in REJECT_RULES})
    per_symbol: dict[str, dict[str, int]] = {}
    exploded = kept.loc[flagged, ["symbol", "quality_flags"]].assign(rule=lambda f: f["quality_flags"].str.split("|"))
    for (symbol, rule), n in exploded.explode("rule").groupby(["symbol", "rule"]).size().items():
        per_symbol.setdefault(symbol, {})[rule] = int(n)
    for (symbol, rule), n in rejects.assign(symbol=rejects["symbol"].fillna("")).groupby(
            ["symbol", "rule"]).size().items():
        per_symbol.setdefault(symbol or "(unparsed)", {})[rule] = int(n)
    return {
        "files": len(files),
        "formats": dict(pd.Series([f.fmt for f in files]).value_counts().astype(int)),
        "read": read, "kept": len(kept), "clean": int((~flagged).sum()), "flagged": int(flagged.sum()),
        "rejected": len(rejects), "by_rule": by_rule,
        "junk_columns": {f.path.name: f.dropped_columns for f in files if f.dropped_columns},
        "symbols": int(kept["symbol"].nunique()),
        "price_basis": {basis: int(n) for basis, n in kept.groupby("price_basis")["symbol"].nunique().items()}
        if len(kept) else {},
        "first_date": str(min(kept["date"])) if len(kept) else None,
        "last_date": str(max(kept["date"])) if len(kept) else None,
        "sessions": len(outcome.calendar.sessions),
        "by_symbol": per_symbol,
        "refused": refused,
    }


def ingest(paths: Iterable[Path], store_dir: Path, today: dt.date | None = None,
           progress: bool = True, reference_file: Path = DEFAULT_REFERENCE, strict: bool = False,
           columns: ColumnMap | None = None, price_basis: PriceBasis | None = None) -> IngestResult:
    """Read, validate and store what can be read; a file that cannot is refused and listed in ``report["refused"]``,
    and so is an instrument whose price basis clashes (``symbol`` names it; the store keeps what it held of it).

    ``strict`` raises PlatformError (store untouched) at the first refusal instead; so does a run
    where no file at all could be read, as there is nothing to store. ``price_basis`` is the basis
    the user declares for files whose layout does not name one (default raw).
    """
    files = discover(list(paths))
    reference = load_reference(read_text(reference_file)) if reference_file.exists() else \
        pd.DataFrame(columns=["sector", "category"])
    parsed: list[ParsedFile] = []
    errors: list[tuple[Path, PlatformError, str | None]] = []

    def refuse(path: Path, exc: PlatformError, symbol: str | None = None) -> None:
        if strict:
            raise exc
        errors.append((path, exc, symbol))

    for path in tqdm(files, desc="ingest", unit="file", disable=not progress):
        try:
            text = read_text(path)
            if is_reference(text):
                reference = load_reference(text)
            else:
                parsed.append(parse_file(path, text, columns, price_basis))
        except PlatformError as exc:
            refuse(path, exc)
    # after the loop: the reference file may come after the files it vouches for
    for item in list(parsed):
        try:
            _check_symbols(item, reference)
        except PlatformError as exc:
            parsed.remove(item)
            refuse(item.path, exc)
    if errors and not parsed:
        if len(errors) == 1:
            raise errors[0][1]
        raise PlatformError(f"none of the {len(errors)} files could be read; first: {errors[0][1]}",
                            "fix or remove the files named above")
    read = sum(len(p.rows) + len(p.truncated_lines) for p in parsed)
    if not read:
        names = ", ".join(str(p.path) for p in parsed[:3]) + (" ..." if len(parsed) > 3 else "")
        raise PlatformError(f"no data rows in {names}: only headers, nothing to store",
                            "point `dse ingest` at files with rows below their header; the store is untouched")
    # the basis check and the series kept from the store read it: no other writer may change it before the swap
    with store.writer_lock(store_dir):
        held = store.read_price_basis(store_dir) if store.exists(store_dir) else {}
        outcome = apply_rules(parsed, reference, today, held)
        for path, symbol, exc in _basis_refusals(outcome.basis_clashes, held):
            refuse(path, exc, symbol)
        refused = [{"file": str(path), **({"symbol": symbol} if symbol else {}),
                    "reason": str(exc).removeprefix(f"{path}: ")} for path, exc, symbol in errors]
        report = build_report(parsed, outcome, read, refused)
        if report["kept"] + report["rejected"] != read:
            raise PlatformError(f"internal reconciliation failed: kept {report['kept']} + rejected "
                                f"{report['rejected']} != read {read}", "report this as a bug")
        kept, calendar = outcome.kept, outcome.calendar
        report["kept_from_store"] = {}
        held_refused = sorted({item["symbol"] for item in refused if "symbol" in item} & set(held))
        if held_refused:
            stored, calendar = _stored_series(store_dir, held_refused, calendar)
            kept = pd.concat([kept, stored], ignore_index=True)
            report["kept_from_store"] = {s: int(n) for s, n in stored.groupby("symbol").size().items()}
        by_symbol = pd.DataFrame(report["by_symbol"]).T.fillna(0).astype(int).sort_index()
        store.write_store(store_dir, kept, calendar, {
            "rejects.csv": outcome.rejects.to_csv(index=False),
            "quality_report.json": json.dumps(report, indent=2, default=str),
            "quality_by_symbol.csv": by_symbol.to_csv(index_label="symbol"),
        })
    return IngestResult(report, store_dir)
