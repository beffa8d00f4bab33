"""Every layout people have is read from real DSE rows, and one unreadable file never costs the others."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dse_platform.cli.data import app
from dse_platform.config import PROJECT_DIR
from dse_platform.data import store
from dse_platform.data.formats import ColumnMap
from dse_platform.data.ingest import ingest
from dse_platform.data.instruments import DSEX
from dse_platform.errors import PlatformError
from tests.support.platform import TODAY

DATA = PROJECT_DIR / "data"


def _eod(code: str, start: str, n: int) -> list[dict[str, str]]:
    """``n`` real rows of a shipped per-instrument file from ``start`` (MM/DD/YYYY) on."""
    rows = list(csv.DictReader(io.StringIO(gzip.decompress((DATA / "dse-eod-2018-2025" / f"{code}.csv.gz")
                                                             .read_bytes()).decode())))
    first = next(i for i, r in enumerate(rows) if r["date"] == start)
    return rows[first:first + n]


def _day_end(n: int) -> list[dict[str, str]]:
    """The first ``n`` traded instruments of the shipped day-end archive (2025-10-22)."""
    rows = csv.DictReader(io.StringIO((DATA / "day-end-archive-2025-10-22.csv").read_text()))
    return [r for r in rows if r["Open"] != "0"][:n]


def _iso(us_date: str) -> str:
    return dt.datetime.strptime(us_date, "%m/%d/%Y").date().isoformat()


def _write(folder: Path, name: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _ingest(tmp_path: Path, *paths: Path, **kwargs) -> dict:
    report = ingest(list(paths), tmp_path / "store", today=TODAY, progress=False, **kwargs).report
    assert report["kept"] + report["rejected"] == report["read"]
    return report


def test_generic_ohlcv_any_case_symbol_from_file_name(tmp_path: Path) -> None:
    batbc = _eod("BATBC", "01/02/2024", 5)
    square = _eod("SQURPHARMA", "01/02/2024", 5)
    _write(tmp_path / "in", "batbc.csv", ["Date,Open,High,Low,Close,Volume"]
           + [f"{_iso(r['date'])},{r['open']},{r['high']},{r['low']},{r['close']},{r['volume']}" for r in batbc])
    _write(tmp_path / "in", "SQURPHARMA.csv", ["DATE,OPEN,HIGH,LOW,CLOSE,VOLUME,VALUE_MN"]
           + [f"{r['date']},{r['open']},{r['high']},{r['low']},{r['close']},{r['volume']}," for r in square])
    report = _ingest(tmp_path, tmp_path / "in")
    assert report["formats"] == {"ohlcv": 2} and report["read"] == 10 and report["refused"] == []
    bars = store.read_bars(tmp_path / "store")
    assert set(bars["symbol"]) == {"BATBC", "SQURPHARMA"}
    first = bars[bars["symbol"] == "BATBC"].iloc[0]
    assert first["date"] == dt.date(2024, 1, 2) and first["close"] == float(batbc[0]["close"])


def test_trading_code_layouts_of_dse_and_bdshare_with_an_index_alias(tmp_path: Path) -> None:
    day = _day_end(6)
    dsex = _eod("00DSEX", "01/02/2024", 1)[0]
    _write(tmp_path / "in", "dse.csv", ["trading_code,date,openning_price,high,low,closing_price,volume"]
           + [f"{r['Scrip']},{r['DATE']},{r['Open']},{r['High']},{r['Low']},{r['Close']},{r['Volume']}"
              for r in day[:3]]
           + [f"DSEX,{_iso(dsex['date'])},{dsex['open']},{dsex['high']},{dsex['low']},{dsex['close']},"])
    _write(tmp_path / "in", "bdshare.csv", ["date,trading_code,ltp,high,low,openp,closep,ycp,trade,value_mn,volume"]
           + [f"{r['DATE']},{r['Scrip']},{r['LTP*']},{r['High']},{r['Low']},{r['Open']},{r['Close']},{r['YCP']},"
              f"{r['Trade']},{r['VALUE (mn)']},{r['Volume']}" for r in day[3:]])
    report = _ingest(tmp_path, tmp_path / "in")
    assert report["formats"] == {"trading-code": 2} and report["read"] == 7
    bars = store.read_bars(tmp_path / "store")
    assert set(bars["symbol"]) == {r["Scrip"] for r in day} | {DSEX}
    bdshare = bars[bars["symbol"] == day[3]["Scrip"]].iloc[0]
    assert bdshare["open"] == float(day[3]["Open"]) and bdshare["trades"] == int(day[3]["Trade"])
    assert (bars.loc[bars["symbol"] == DSEX, "sector"] == "Index").all()


@pytest.mark.parametrize("style", ["%Y%m%d", "%d/%m/%Y", "%Y-%m-%d"])
def test_headerless_export_reads_the_day_order_off_the_data(tmp_path: Path, style: str) -> None:
    rows = _eod("BATBC", "01/10/2024", 6)  # 10-17 January: days above 12 tell day/month apart
    lines = [f"BATBC,{dt.datetime.strptime(r['date'], '%m/%d/%Y').strftime(style)},{r['open']},{r['high']},"
             f"{r['low']},{r['close']},{r['volume']}" for r in rows]
    report = _ingest(tmp_path, _write(tmp_path / "in", "export.csv", lines))
    assert report["formats"] == {"headerless": 1} and report["read"] == 6 and report["kept"] == 6
    dates = sorted(store.read_bars(tmp_path / "store")["date"])
    assert dates[0] == dt.date(2024, 1, 10) and dates[-1] == dt.date(2024, 1, 17)


def test_headerless_export_with_every_day_below_13_is_refused_as_ambiguous(tmp_path: Path) -> None:
    rows = _eod("BATBC", "01/02/2024", 5)  # 2-8 January
    lines = [f"BATBC,{dt.datetime.strptime(r['date'], '%m/%d/%Y'):%d/%m/%Y},{r['open']},{r['high']},{r['low']},"
             f"{r['close']},{r['volume']}" for r in rows]
    with pytest.raises(PlatformError, match=r"export\.csv: date column \(2nd\) is ambiguous.*YYYY-MM-DD"):
        _ingest(tmp_path, _write(tmp_path / "in", "export.csv", lines))


def test_column_map_reads_any_layout_and_refuses_unknown_fields(tmp_path: Path) -> None:
    day = _day_end(4)
    path = _write(tmp_path / "in", "broker.csv", ["Ticker,Day,O,H,L,C,Qty"]
                  + [f"{r['Scrip']},{r['DATE']},{r['Open']},{r['High']},{r['Low']},{r['Close']},{r['Volume']}"
                     for r in day])
    columns = ColumnMap.parse("symbol=Ticker,date=Day,open=O,high=H,low=L,close=C,volume=Qty")
    report = _ingest(tmp_path, path, columns=columns)
    assert report["formats"] == {"column-map": 1} and report["kept"] == 4
    assert set(store.read_bars(tmp_path / "store")["symbol"]) == {r["Scrip"] for r in day}
    with pytest.raises(PlatformError, match=r"unknown field 'price'.*symbol, date, open"):
        ColumnMap.parse("symbol=Ticker,date=Day,price=C")
    with pytest.raises(PlatformError, match="no column given for open, high, low"):
        ColumnMap.parse("date=Day,close=C")


def _mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    rows = _eod("BATBC", "01/02/2024", 5)
    _write(folder, "BATBC.csv", ["date,open,high,low,close,volume,trade"]
           + [",".join(r[c] for c in ("date", "open", "high", "low", "close", "volume", "trade")) for r in rows])
    (folder / "sheet.csv").write_bytes(b"PK\x03\x04\x00\x00binary")
    return folder


def test_an_unreadable_file_is_refused_and_the_others_are_stored(tmp_path: Path) -> None:
    report = _ingest(tmp_path, _mixed_folder(tmp_path))
    assert report["files"] == 1 and report["read"] == 5 and report["kept"] == 5
    assert [r["file"] for r in report["refused"]] == [str(tmp_path / "in" / "sheet.csv")]
    assert report["refused"][0]["reason"].startswith("binary data")
    assert set(store.read_bars(tmp_path / "store")["symbol"]) == {"BATBC"}


def test_strict_stops_at_the_first_refusal(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match=r"sheet\.csv: binary data"):
        _ingest(tmp_path, _mixed_folder(tmp_path), strict=True)
    assert not (tmp_path / "store").exists()


def test_cli_prints_refusals_and_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", str(_mixed_folder(tmp_path)), "--store", str(tmp_path / "s")])
    assert result.exit_code == 1, result.output
    assert "kept 5" in result.output and "refused " in result.output and "sheet.csv" in result.output
    assert (tmp_path / "s" / "quality_report.json").exists()


def test_files_with_only_a_header_are_refused_and_the_store_is_untouched(tmp_path: Path) -> None:
    _write(tmp_path / "in", "ACI.csv", ["Date,Open,High,Low,Close,Volume"])
    with pytest.raises(PlatformError, match=r"no data rows in .*ACI\.csv") as caught:
        ingest([tmp_path / "in"], tmp_path / "store", today=TODAY, progress=False)
    assert "untouched" in caught.value.fix
    assert not store.exists(tmp_path / "store")
