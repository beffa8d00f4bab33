"""Index symbols under both spellings, and the instrument reference the ingest reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from dse_platform.config import PROJECT_DIR
from dse_platform.data.formats import parse_file
from dse_platform.data.instruments import (
    DEFAULT_REFERENCE,
    DSEX,
    INDEX_ALIASES,
    INDEX_SYMBOLS,
    canonical_symbol,
    is_index,
    is_reference,
    load_reference,
)
from dse_platform.data.raw_file import symbol_from_filename

EOD = PROJECT_DIR / "data" / "dse-eod-2018-2025"


@pytest.mark.parametrize("alias", ["DSEX", "DSES", "DS30", "DSMEX", "CDSET"])
def test_dse_spellings_are_aliases_of_the_stored_codes(alias: str) -> None:
    code = canonical_symbol(alias)
    assert code == "00" + alias and code in INDEX_SYMBOLS
    assert is_index(alias) and is_index(code) and is_index(f" {alias.lower()} ")
    assert canonical_symbol(code) == code


@pytest.mark.parametrize("code", ["DSSL", "DSHGARME", "GP", "00GP", "DSEXX", "DS3", "AMCL(PRAN)", ""])
def test_trading_codes_are_not_indices(code: str) -> None:
    assert not is_index(code)
    assert canonical_symbol(code) == code


def test_the_shipped_index_files_are_the_indices_and_nothing_else() -> None:
    indices = {symbol_from_filename(p) for p in EOD.glob("*.csv.gz") if is_index(symbol_from_filename(p))}
    assert DSEX in indices and indices <= INDEX_SYMBOLS
    assert {p.name.removesuffix(".csv.gz") for p in EOD.glob("00*.csv.gz")} == indices


def test_no_reference_code_is_an_index() -> None:
    reference = load_reference(DEFAULT_REFERENCE.read_text(encoding="utf-8-sig"))
    assert len(reference) > 300 and not any(is_index(code) for code in reference.index)


def test_every_alias_maps_to_a_distinct_code() -> None:
    assert len(set(INDEX_ALIASES.values())) == len(INDEX_ALIASES) == len(INDEX_SYMBOLS)


def test_an_index_file_under_dse_spelling_is_stored_as_the_index() -> None:
    parsed = parse_file(Path("dsex.csv"), "date,open,high,low,close,volume,trade\n10/21/2025,1,2,1,2,3,0\n")
    assert set(parsed.rows["symbol"]) == {DSEX}


def test_reference_file_is_told_apart_by_its_header_and_read_trimmed() -> None:
    text = 'Ticker, MarketName, GroupName\n batbc ,Food & Allied,Category - A\nGP,Telecom, Category - Z\nGP,X,B\n'
    assert is_reference(text) and not is_reference("date,open,high,low,close,volume,trade\n")
    reference = load_reference(text)
    assert reference.to_dict("index") == {"BATBC": {"sector": "Food & Allied", "category": "A"},
                                          "GP": {"sector": "Telecom", "category": "Z"}}
