"""``dse ingest``: raw DSE files -> the canonical bar store, with a data-quality report.

Files are recognised by header (see :mod:`formats`); the instrument reference file
(``Ticker, MarketName, GroupName``, see :mod:`instruments`) supplies sector and category. Rows go through
:mod:`quality`; the store is swapped in atomically (see :mod:`store`).
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
from dse_platform.data.quality import FLAG_RULES, REJECT_RULES, apply_rules
from dse_platform.data.raw_file import ParsedFile, read_text
from dse_platform.errors import PlatformError

#: layouts whose single trading code comes from the file name (not checked against the reference)
PER_INSTRUMENT = {"dse-eod", "ohlcv", "investing"}


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
        "first_date": str(min(kept["date"])) if len(kept) else None,
        "last_date": str(max(kept["date"])) if len(kept) else None,
        "sessions": len(outcome.calendar.sessions),
        "by_symbol": per_symbol,
        "refused": refused,
    }


def ingest(paths: Iterable[Path], store_dir: Path, today: dt.date | None = None,
           progress: bool = True, reference_file: Path = DEFAULT_REFERENCE, strict: bool = False,
           columns: ColumnMap | None = None) -> IngestResult:
    """Read, validate and store what can be read; a file that cannot is refused and listed in ``report["refused"]``.

    ``strict`` raises PlatformError (store untouched) at the first refusal instead; so does a run
    where no file at all could be read, as there is nothing to store.
    """
    files = discover(list(paths))
    reference = load_reference(read_text(reference_file)) if reference_file.exists() else \
        pd.DataFrame(columns=["sector", "category"])
    parsed: list[ParsedFile] = []
    errors: list[tuple[Path, PlatformError]] = []

    def refuse(path: Path, exc: PlatformError) -> None:
        if strict:
            raise exc
        errors.append((path, exc))

    for path in tqdm(files, desc="ingest", unit="file", disable=not progress):
        try:
            text = read_text(path)
            if is_reference(text):
                reference = load_reference(text)
            else:
                parsed.append(parse_file(path, text, columns))
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
    refused = [{"file": str(path), "reason": str(exc).removeprefix(f"{path}: ")} for path, exc in errors]
    read = sum(len(p.rows) + len(p.truncated_lines) for p in parsed)
    outcome = apply_rules(parsed, reference, today)
    report = build_report(parsed, outcome, read, refused)
    if report["kept"] + report["rejected"] != read:
        raise PlatformError(f"internal reconciliation failed: kept {report['kept']} + rejected "
                            f"{report['rejected']} != read {read}", "report this as a bug")
    by_symbol = pd.DataFrame(report["by_symbol"]).T.fillna(0).astype(int).sort_index()
    store.write_store(store_dir, outcome.kept, outcome.calendar, {
        "rejects.csv": outcome.rejects.to_csv(index=False),
        "quality_report.json": json.dumps(report, indent=2, default=str),
        "quality_by_symbol.csv": by_symbol.to_csv(index_label="symbol"),
    })
    return IngestResult(report, store_dir)
