"""A store holds each instrument in one price basis: back-adjusted sources are recorded, mixes are refused."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from dse_platform.cli.data import app
from dse_platform.data import store
from dse_platform.data.formats import ColumnMap, parse_file
from dse_platform.data.ingest import ingest
from dse_platform.data.quality import check_bars
from dse_platform.data.raw_file import parse_price_basis
from dse_platform.errors import PlatformError
from tests.support.platform import TODAY
from tests.unit.data.test_layouts import _eod, _iso, _write

#: real bars of two instruments from 2 January 2024 on, and a bonus-issue style factor to back-adjust them by
BATBC = _eod("BATBC", "01/02/2024", 5)
SQUARE = _eod("SQURPHARMA", "01/02/2024", 5)
FACTOR = 0.5
NO_REFERENCE = pd.DataFrame(columns=["sector", "category"])


def _raw(folder: Path, name: str, rows: list[dict[str, str]]) -> Path:
    """Rows in the shipped per-instrument layout (raw: nothing in it says otherwise)."""
    return _write(folder, name, ["date,open,high,low,close,volume,trade"] + [
        ",".join(r[c] for c in ("date", "open", "high", "low", "close", "volume", "trade")) for r in rows])


def _yahoo(folder: Path, name: str, rows: list[dict[str, str]], raw_close: bool = True) -> Path:
    """Rows as a Yahoo-style export: ``Adj Close`` (the close times FACTOR), beside the raw close or alone."""
    header = "Date,Open,High,Low," + ("Close," if raw_close else "") + "Adj Close,Volume"
    return _write(folder, name, [header] + [
        f"{_iso(r['date'])},{r['open']},{r['high']},{r['low']}," + (f"{r['close']}," if raw_close else "")
        + f"{float(r['close']) * FACTOR},{r['volume']}" for r in rows])


def _ingest(tmp_path: Path, *paths: Path, **kwargs) -> dict:
    report = ingest(list(paths), tmp_path / "store", today=TODAY, progress=False, **kwargs).report
    assert report["kept"] + report["rejected"] == report["read"]
    assert report["clean"] + report["flagged"] + report["rejected"] == report["read"]
    return report


def _basis(tmp_path: Path) -> dict[str, str]:
    return store.read_price_basis(tmp_path / "store")


def test_an_adj_close_column_is_recorded_as_adjusted_and_the_default_is_raw(tmp_path: Path) -> None:
    report = _ingest(tmp_path, _yahoo(tmp_path / "in", "BATBC.csv", BATBC, raw_close=False),
                     _raw(tmp_path / "in", "SQURPHARMA.csv", SQUARE))
    assert report["price_basis"] == {"adjusted": 1, "raw": 1} and report["refused"] == []
    assert _basis(tmp_path) == {"BATBC": "adjusted", "SQURPHARMA": "raw"}
    bars = store.read_bars(tmp_path / "store")
    assert set(bars.loc[bars["symbol"] == "BATBC", "price_basis"]) == {"adjusted"}


def test_close_beside_adj_close_needs_the_option_and_adjusted_scales_the_bar(tmp_path: Path) -> None:
    path = _yahoo(tmp_path / "in", "SQURPHARMA.csv", SQUARE)
    *lines, final = path.read_text().splitlines()
    cells = final.split(",")
    cells[4] = "abc"  # a raw close that spoils the factor keeps its cell, to be rejected for it
    path.write_text("\n".join([*lines, ",".join(cells)]) + "\n")
    with pytest.raises(PlatformError, match=r"SQURPHARMA\.csv: price basis is ambiguous.*'Adj Close'") as err:
        parse_file(path)
    assert "--price-basis raw" in err.value.fix and "--price-basis adjusted" in err.value.fix
    raw = parse_file(path, price_basis="raw").rows
    assert raw["close"].tolist() == [r["close"] for r in SQUARE[:4]] + ["abc"] and set(raw["price_basis"]) == {"raw"}
    adjusted = parse_file(path, price_basis="adjusted").rows
    assert set(adjusted["price_basis"]) == {"adjusted"} and adjusted["close"].iloc[4] == "abc"
    for col in ("open", "high", "low", "close"):
        assert float(adjusted[col].iloc[0]) == pytest.approx(float(SQUARE[0][col]) * FACTOR)


def test_the_option_and_a_column_map_declare_the_basis_and_contradictions_are_refused(tmp_path: Path) -> None:
    assert set(parse_file(_raw(tmp_path, "BATBC.csv", BATBC), price_basis="adjusted").rows["price_basis"]) == {
        "adjusted"}
    broker = _write(tmp_path, "broker.csv", ["Ticker,Day,O,H,L,Adj_Close"]
                    + [f"BATBC,{r['date']},{r['open']},{r['high']},{r['low']},{r['close']}" for r in BATBC])
    columns = ColumnMap.parse("symbol=Ticker,date=Day,open=O,high=H,low=L,close=Adj_Close")
    assert set(parse_file(broker, columns=columns).rows["price_basis"]) == {"adjusted"}  # the mapped close says so
    with pytest.raises(PlatformError, match=r"broker\.csv: price basis: its close column 'Adj_Close' is back-adj"):
        parse_file(broker, columns=columns, price_basis="raw")
    with pytest.raises(PlatformError, match="is not raw or adjusted") as err:
        parse_price_basis("adj")
    assert "--price-basis adjusted" in err.value.fix


def test_one_run_with_raw_and_adjusted_series_of_an_instrument_refuses_it_and_stores_the_others(
        tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _raw(folder, "BATBC.csv", BATBC)
    _yahoo(folder / "yahoo", "BATBC.csv", BATBC[:3], raw_close=False)
    _raw(folder, "SQURPHARMA.csv", SQUARE)
    report = _ingest(tmp_path, folder)
    assert report["read"] == 13 and report["kept"] == 5 and report["by_rule"]["price_basis_mismatch"] == 8
    assert report["by_symbol"]["BATBC"] == {"price_basis_mismatch": 8}
    assert {(r["file"], r["symbol"]) for r in report["refused"]} == {
        (str(folder / "BATBC.csv"), "BATBC"), (str(folder / "yahoo" / "BATBC.csv"), "BATBC")}
    reasons = sorted(r["reason"] for r in report["refused"])  # two files named BATBC.csv: shown by path
    assert reasons[0].startswith(f"BATBC is adjusted here but raw in {folder / 'BATBC.csv'}: its 3 row(s) are "
                                 "rejected")
    assert reasons[1].startswith(f"BATBC is raw here but adjusted in {folder / 'yahoo' / 'BATBC.csv'}: its 5 "
                                 "row(s) are rejected")
    assert all("BATBC is not stored" in r and "fix: keep one price basis" in r for r in reasons)
    assert _basis(tmp_path) == {"SQURPHARMA": "raw"}


def test_a_series_in_another_basis_than_the_store_holds_is_refused_and_the_store_keeps_its_own(
        tmp_path: Path) -> None:
    _ingest(tmp_path, _raw(tmp_path / "first", "BATBC.csv", BATBC), _raw(tmp_path / "first", "SQURPHARMA.csv",
                                                                           SQUARE[:2]))
    later = _eod("SQURPHARMA", "01/02/2024", 8)
    report = _ingest(tmp_path, _yahoo(tmp_path / "later", "BATBC.csv", BATBC, raw_close=False),
                     _raw(tmp_path / "later", "SQURPHARMA.csv", later))
    assert report["kept"] == 8 and report["rejected"] == 5 and report["by_rule"]["price_basis_mismatch"] == 5
    (refusal,) = report["refused"]
    assert refusal["file"] == str(tmp_path / "later" / "BATBC.csv") and refusal["symbol"] == "BATBC"
    assert refusal["reason"].startswith("BATBC is adjusted here but the store holds it raw: its 5 row(s) are "
                                        "rejected (price_basis_mismatch), the store keeps its raw series (fix: ")
    assert report["kept_from_store"] == {"BATBC": 5}
    bars = store.read_bars(tmp_path / "store")
    batbc = bars[bars["symbol"] == "BATBC"]
    assert batbc["close"].tolist() == [float(r["close"]) for r in BATBC] and set(batbc["price_basis"]) == {"raw"}
    assert (bars["symbol"] == "SQURPHARMA").sum() == 8
    calendar = store.read_calendar(tmp_path / "store")
    assert all(calendar.is_session(d) for d in batbc["date"])
    # the refusal holds on the next run too (the store still holds BATBC raw); --strict stops at it
    with pytest.raises(PlatformError, match=r"later/BATBC\.csv: BATBC is adjusted here but the store holds it raw"):
        _ingest(tmp_path, tmp_path / "later", strict=True)
    assert store.row_count(tmp_path / "store") == 13


def test_a_store_written_before_the_price_basis_column_reads_as_raw_and_never_takes_a_splice(
        tmp_path: Path) -> None:
    _ingest(tmp_path, _raw(tmp_path / "in", "BATBC.csv", BATBC))
    root = (tmp_path / "store").resolve()
    table = ds.dataset(store.bars_dir(root), format="parquet", partitioning="hive").to_table()
    shutil.rmtree(store.bars_dir(root))
    ds.write_dataset(table.drop_columns(["price_basis"]), store.bars_dir(root), format="parquet",
                     partitioning=["year"], partitioning_flavor="hive")
    assert "price_basis" not in ds.dataset(store.bars_dir(root), format="parquet").schema.names
    bars = store.read_bars(tmp_path / "store")
    assert len(bars) == 5 and set(bars["price_basis"]) == {"raw"} and _basis(tmp_path) == {"BATBC": "raw"}
    spliced = bars.assign(price_basis=["adjusted"] * 2 + ["raw"] * 3)
    with pytest.raises(PlatformError, match="the bars of BATBC come both raw and adjusted"):
        store.write_store(tmp_path / "store", spliced, store.read_calendar(tmp_path / "store"), {})
    assert len(store.read_bars(tmp_path / "store")) == 5


def test_a_raw_bar_folded_onto_an_adjusted_instrument_is_rejected_with_its_stored_neighbour() -> None:
    """The nightly fold checks streamed bars (DSE's traded prices) beside each instrument's last stored bar."""
    stored = {"symbol": "BATBC", "date": dt.date(2024, 1, 2), "open": 10.0, "high": 11.0, "low": 9.5, "close": 10.5,
              "volume": 100.0, "trades": 5, "value_mn": None, "source_file": "BATBC.csv", "price_basis": "adjusted"}
    streamed = {**stored, "date": dt.date(2024, 1, 3), "source_file": "stream:eod", "price_basis": None}
    outcome = check_bars(pd.DataFrame([stored, streamed]), NO_REFERENCE, "stream", today=TODAY)
    assert outcome.kept.empty and outcome.rejects["rule"].tolist() == ["price_basis_mismatch"] * 2
    assert "BATBC is raw here but adjusted in BATBC.csv" in outcome.rejects["reason"].tolist()


def test_cli_takes_the_price_basis_and_exits_1_on_a_refused_instrument(tmp_path: Path) -> None:
    target = str(tmp_path / "s")
    raw = _raw(tmp_path / "in", "BATBC.csv", BATBC)
    ok = CliRunner().invoke(app, ["ingest", str(raw), "--store", target])
    assert ok.exit_code == 0 and "instruments by price basis: raw 1" in ok.output, ok.output
    result = CliRunner().invoke(app, ["ingest", str(raw), "--store", target, "--price-basis", "adjusted"])
    assert result.exit_code == 1, result.output
    assert f"refused {raw}: BATBC is adjusted here but the store holds it raw" in result.output
    assert "kept as the store held them (their new rows were refused for their price basis): BATBC 5 rows" in \
        result.output and "0 file(s) and 1 instrument(s) (for their price basis) refused" in result.output
    assert store.read_price_basis(tmp_path / "s") == {"BATBC": "raw"} and store.row_count(tmp_path / "s") == 5
