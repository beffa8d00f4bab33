"""Ingest of the real shipped DSE data: counts reconcile, each defect rule fires where the data README says."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dse_platform.config import PROJECT_DIR, Settings
from dse_platform.data import store
from dse_platform.data.ingest import ingest
from dse_platform.data.instruments import DSEX, INDEX_SYMBOLS
from dse_platform.errors import PlatformError
from dse_platform.runtime import demo
from tests.support.platform import TODAY

DATA = PROJECT_DIR / "data"
EOD = DATA / "dse-eod-2018-2025"


@pytest.fixture(scope="session")
def shipped(shipped_store):
    """The whole shipped data set ingested once per session, with its bars and rejects read back."""
    report, target = shipped_store
    bars = store.read_bars(target)
    rejects = pd.read_csv(target / "rejects.csv", dtype=str, keep_default_na=False)
    return report, bars, rejects, target


def _flagged(bars, rule):
    return bars[bars["quality_flags"].str.contains(rule, regex=False)]


def test_counts_reconcile_exactly(shipped):
    report, bars, rejects, target = shipped
    assert report["files"] == 404  # 402 EOD files + investing export + day-end archive
    assert report["kept"] + report["rejected"] == report["read"]
    assert report["clean"] + report["flagged"] == report["kept"] == len(bars)
    assert report["rejected"] == len(rejects)
    assert store.row_count(target) == len(bars)
    raw_rows = sum(len(gzip.decompress(p.read_bytes()).strip().splitlines()) - 1 for p in EOD.glob("*.csv.gz"))
    raw_rows += len((DATA / "dsex-daily-2013-2025-investing.csv").read_text().strip().splitlines()) - 1
    raw_rows += len((DATA / "day-end-archive-2025-10-22.csv").read_text().strip().splitlines()) - 1
    assert report["read"] == raw_rows
    saved = json.loads((target / "quality_report.json").read_text())
    assert saved["by_rule"] == report["by_rule"]


def test_synthetic_flat_rows_are_flagged_not_dropped(shipped):
    _, bars, _, _ = shipped
    synthetic = _flagged(bars, "synthetic")
    stocks = synthetic[~synthetic["symbol"].isin(INDEX_SYMBOLS)]
    # the data README counts 1,273 such rows in the EOD files
    assert 1_200 <= len(stocks) <= 1_300
    assert (stocks["open"] == stocks["close"]).all() and (stocks["volume"] == 0).all()
    # the index files end with flat copies of the last real value
    dsex = bars[(bars["symbol"] == DSEX) & (bars["date"] >= dt.date(2024, 11, 12))
                & (bars["source_file"] == "00DSEX.csv.gz")]
    assert dsex["quality_flags"].str.contains("synthetic").all() and len(dsex) >= 3


def test_empty_volume_cells_are_flagged(shipped):
    _, bars, _, _ = shipped
    missing = _flagged(bars, "volume_missing")
    assert 1_000 <= len(missing) <= 1_032 and missing["volume"].isna().all()


def test_junk_columns_are_reported(shipped):
    report, _, _, _ = shipped
    assert set(report["junk_columns"]) == {"SIPLC.csv.gz", "UPGDCL.csv.gz"}
    assert all(c.startswith("Unnamed") for cols in report["junk_columns"].values() for c in cols)


def test_high_below_low_rows_are_rejected_with_the_rule(shipped):
    _, bars, rejects, _ = shipped
    inverted = rejects[rejects["rule"] == "high_below_low"]
    assert len(inverted) >= 21
    assert inverted["reason"].str.contains(" < low ").all()
    assert not (bars["high"] < bars["low"]).any()


def test_open_or_close_outside_range_is_flagged(shipped):
    _, bars, _, _ = shipped
    outside = _flagged(bars, "ohlc_outside_range")
    assert len(outside) >= 1_300
    assert ((outside[["open", "close"]].max(axis=1) > outside["high"])
            | (outside[["open", "close"]].min(axis=1) < outside["low"])).all()


def test_duplicates_keep_the_richest_source(shipped):
    _, bars, rejects, _ = shipped
    dups = rejects[rejects["rule"] == "duplicate"]
    assert len(dups) > 1_000 and (dups["source_file"] == "dsex-daily-2013-2025-investing.csv").all()
    assert not bars.duplicated(["symbol", "date"]).any()
    # before 2018 only investing.com has DSEX: those days are kept from it
    early = bars[(bars["symbol"] == DSEX) & (bars["date"] < dt.date(2018, 1, 1))]
    assert len(early) > 1_000 and (early["source_file"] == "dsex-daily-2013-2025-investing.csv").all()


def test_calendar_learns_weekends_closures_and_saturday_sessions(shipped):
    _, bars, _, target = shipped
    cal = store.read_calendar(target)
    assert not cal.is_session(dt.date(2024, 3, 1))  # a Friday
    assert not cal.is_session(dt.date(2020, 4, 15))  # COVID closure
    eod = bars[~bars["source_file"].str.startswith(("dsex-", "day-end"))]
    saturdays = sorted({d for d in eod["date"] if d.weekday() == 5})
    assert saturdays == [dt.date(2025, 5, 17), dt.date(2025, 5, 24)]
    assert all(cal.is_session(d) for d in saturdays)
    assert len(_flagged(bars, "weekend_session")) > 0
    assert cal.next_session(dt.date(2024, 1, 18)) == dt.date(2024, 1, 21)  # Thursday -> Sunday
    assert cal.next_session(dt.date(2024, 1, 4)) == dt.date(2024, 1, 8)  # 7 Jan 2024: election holiday
    assert cal.next_session(dt.date(2020, 3, 29)) == dt.date(2020, 5, 31)  # across the COVID halt
    # outside the data no closure is known: Sunday-Thursday
    assert cal.is_session(dt.date(2026, 11, 26)) and not cal.is_session(dt.date(2026, 11, 27))


def test_price_jumps_and_indices(shipped):
    _, bars, _, _ = shipped
    jumps = _flagged(bars, "price_jump")
    assert len(jumps) > 0
    dsex = bars[bars["symbol"] == DSEX]
    assert dsex["volume"].isna().all() and dsex["trades"].isna().all()
    assert dsex.loc[dsex["source_file"] == "00DSEX.csv.gz", "value_mn"].gt(0).any()
    assert (dsex["sector"] == "Index").all()


def test_day_end_archive_untraded_instruments_and_sector(shipped):
    _, bars, rejects, _ = shipped
    day = bars[bars["date"] == dt.date(2025, 10, 22)]
    assert len(day) > 600
    untraded = day[day["quality_flags"].str.contains("synthetic")]
    assert len(untraded) > 0 and (untraded["open"] == untraded["close"]).all()
    truncated = rejects[rejects["rule"] == "truncated_row"]
    assert (truncated["source_file"] == "day-end-archive-2025-10-22.csv").all() and len(truncated) > 0
    batbc = bars[bars["symbol"] == "BATBC"].iloc[0]
    assert batbc["sector"] == "Food & Allied" and batbc["category"] == "A"


# ---- bad input --------------------------------------------------------------------------------
def _eod(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("date,open,high,low,close,volume,trade\n" + body)
    return path


def test_unknown_format_is_refused_naming_file_and_columns(tmp_path):
    bad = tmp_path / "in" / "prices.csv"
    bad.parent.mkdir()
    bad.write_text("ticker,px_last,px_volume\nAAPL,1,2\n")
    with pytest.raises(PlatformError, match=r"prices\.csv: unknown file format; columns seen: ticker, px_last"):
        ingest([bad.parent], tmp_path / "store", progress=False)


def test_wrong_encoding_and_binary_are_clear_errors(tmp_path):
    latin = tmp_path / "in" / "X.csv"
    latin.parent.mkdir()
    latin.write_bytes("date,open,high,low,close,volume,trade\n01/02/2024,1,1,1,1,\xa0,1\n".encode("cp1252"))
    with pytest.raises(PlatformError, match=r"X\.csv: not UTF-8 text .*iconv"):
        ingest([latin], tmp_path / "store", progress=False)
    latin.write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(PlatformError, match="binary data"):
        ingest([latin], tmp_path / "store", progress=False)


def test_bad_rows_are_rejected_with_their_reason(tmp_path):
    rows = "".join(f"01/{d:02d}/2024,10,11,9,10.5,100,5\n" for d in range(2, 11) if d not in (5, 6))
    rows += "01/11/2024,10,11,9,abc,100,5\n"      # bad number
    rows += "13/45/2024,10,11,9,10,100,5\n"       # bad date
    rows += "01/14/2024,10,11,9\n"                # truncated
    rows += "01/15/2024,0,0,0,-1,100,5\n"         # non-positive
    rows += "12/31/2030,10,11,9,10,100,5\n"       # future
    rows += "01/02/2024,10,11,9,10.5,100,5\n"     # duplicate
    path = _eod(tmp_path, "BATBC.csv", rows)
    result = ingest([path], tmp_path / "store", today=TODAY, progress=False)
    rejects = pd.read_csv(tmp_path / "store" / "rejects.csv", dtype=str, keep_default_na=False)
    by_rule = dict(zip(rejects["rule"], rejects["reason"], strict=False))
    assert "abc" in by_rule["bad_number"] and "close" in by_rule["bad_number"]
    assert "13/45/2024" in by_rule["bad_date"]
    assert {"truncated_row", "non_positive_price", "future_date", "duplicate"} <= set(by_rule)
    assert result.report["kept"] + result.report["rejected"] == result.report["read"] == 13
    assert result.report["kept"] == 7 and set(store.read_bars(tmp_path / "store")["symbol"]) == {"BATBC"}


def test_file_of_another_exchange_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(DATA / "instruments-sector-category-2026.csv", tmp_path / "in")
    (tmp_path / "in" / "nyse.csv").write_text(
        "#,DATE,Scrip,LTP*,High,Low,Open,Close,YCP,Trade,VALUE (mn),Volume\n"
        "1,2025-10-22,AAPL,1,1,1,1,1,1,1,1,1\n2,2025-10-22,MSFT,1,1,1,1,1,1,1,1,1\n")
    with pytest.raises(PlatformError, match=r"nyse\.csv: none of its 2 trading codes \(AAPL, MSFT"):
        ingest([tmp_path / "in"], tmp_path / "store", progress=False)


def test_strict_failed_ingest_leaves_the_previous_store_intact(tmp_path):
    good = _eod(tmp_path, "BATBC.csv", "".join(f"01/{d:02d}/2024,10,11,9,10.5,100,5\n" for d in (2, 3, 4, 7)))
    target = tmp_path / "store"
    ingest([good], target, today=TODAY, progress=False)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    (good.parent / "broken.csv").write_text("not,a,dse,file\n1,2,3,4\n")
    with pytest.raises(PlatformError, match="unknown file format"):
        ingest([good.parent], target, today=TODAY, progress=False, strict=True)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".store.")]


def test_cli_prints_the_report_and_refuses_bad_files_in_one_line(tmp_path):
    import subprocess
    import sys

    dse = str(Path(sys.executable).parent / "dse")
    good = _eod(tmp_path, "BATBC.csv", "".join(f"01/{d:02d}/2024,10,11,9,10.5,100,5\n" for d in (2, 3, 4, 7)))
    ok = subprocess.run([dse, "ingest", str(good), "--store", str(tmp_path / "s")], capture_output=True, text=True)
    assert ok.returncode == 0 and "high_below_low" in ok.stdout and "kept 4 (4 clean" in ok.stdout, ok.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    proc = subprocess.run([dse, "ingest", str(bad), "--store", str(tmp_path / "s")], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "columns seen: foo, bar" in proc.stderr


def test_cli_refuses_an_instrument_in_another_price_basis_in_one_line_and_keeps_the_stored_series(tmp_path):
    import subprocess
    import sys

    dse = str(Path(sys.executable).parent / "dse")
    good = _eod(tmp_path, "BATBC.csv", "".join(f"01/{d:02d}/2024,10,11,9,10.5,100,5\n" for d in (2, 3, 4, 7)))
    target = str(tmp_path / "s")
    assert subprocess.run([dse, "ingest", str(good), "--store", target], capture_output=True).returncode == 0
    proc = subprocess.run([dse, "ingest", str(good), "--store", target, "--price-basis", "adjusted"],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("refused ")]
    assert line.startswith(f"refused {good}: BATBC is adjusted here but the store holds it raw: its 4 row(s)")
    assert "(fix: keep one price basis per instrument" in line and "price_basis_mismatch" in proc.stdout
    assert store.read_price_basis(tmp_path / "s") == {"BATBC": "raw"} and store.row_count(tmp_path / "s") == 4
    typo = subprocess.run([dse, "ingest", str(good), "--store", target, "--price-basis", "adj"],
                          capture_output=True, text=True)
    assert typo.returncode == 2 and "--price-basis 'adj' is not raw or adjusted" in typo.stderr


def test_the_demos_ingest_runs_dse_ingest_and_says_what_it_kept(tmp_path):
    """`make demo` ingests in a `dse ingest` process of its own (its memory freed when it ends)."""
    (tmp_path / "data").mkdir()
    for name in ("GP.csv.gz", "BATBC.csv.gz"):
        shutil.copy(EOD / name, tmp_path / "data" / name)
    settings = Settings(_env_file=None, home=tmp_path / "var", data_dir=tmp_path / "data")
    line = demo._ingest(settings)
    report = json.loads((settings.store_dir / "quality_report.json").read_text())
    assert report["files"] == 2 and report["symbols"] == 2
    assert line.startswith(f"demo: ingested {report['kept']:,} bars of 2 instruments") and "0 files refused" in line
    assert "quality" in (settings.logs_dir / "ingest.log").read_text().lower()


def test_the_demo_stops_with_dse_ingests_log_when_nothing_was_stored(tmp_path):
    (tmp_path / "data").mkdir()
    settings = Settings(_env_file=None, home=tmp_path / "var", data_dir=tmp_path / "data")
    with pytest.raises(PlatformError, match="stored nothing") as raised:
        demo._ingest(settings)
    log = settings.logs_dir / "ingest.log"
    assert str(log) in raised.value.fix and "no .csv or .csv.gz files" in log.read_text()
