"""What the platform knows about DSE instruments: which codes are indices, and the sector/category reference.

Indices are stored under 00-prefixed codes (``00DSEX``, as the per-instrument EOD files
name them) so they sort apart from trading codes; DSE's own spellings (``DSEX`` ...) are
aliases of those. Everything that asks "is this an index?" asks :func:`is_index`.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from dse_platform.config import Settings

#: the broad DSE index: the benchmark the model is backtested against
DSEX = "00DSEX"
#: DSE's own name of each index -> the code the store keeps it under
INDEX_ALIASES: dict[str, str] = {
    "DSEX": DSEX,  # DSE Broad Index
    "DSES": "00DSES",  # DSEX Shariah Index
    "DS30": "00DS30",  # DSE 30 blue chips
    "CDSET": "00CDSET",  # DSE-CNI Index of 40 large caps
    "DSMEX": "00DSMEX",  # DSE SME Index
}
INDEX_SYMBOLS: frozenset[str] = frozenset(INDEX_ALIASES.values())

REFERENCE_HEADER = ["ticker", "marketname", "groupname"]
#: used when the files given to ingest do not include a reference file of their own
DEFAULT_REFERENCE: Path = Settings.model_fields["reference_file"].default


def canonical_symbol(symbol: str) -> str:
    """The code the store uses: upper case, trimmed, an index alias replaced by its 00-prefixed code."""
    code = symbol.strip().upper()
    return INDEX_ALIASES.get(code, code)


def is_index(symbol: str) -> bool:
    """True for a DSE index under either spelling (``00DSEX`` or ``DSEX``), False for a trading code."""
    return canonical_symbol(symbol) in INDEX_SYMBOLS


def is_reference(text: str) -> bool:
    """The instrument reference file is told apart by its header."""
    first = text.split("\n", 1)[0]
    return [h.strip().strip('"').lower() for h in first.split(",")] == REFERENCE_HEADER


def load_reference(text: str) -> pd.DataFrame:
    """The reference file's text as a frame: index = trading code; columns sector, category (A/B/N/Z, N/A if none)."""
    frame = pd.read_csv(io.StringIO(text), skipinitialspace=True, dtype=str)
    frame.columns = [c.strip().lower() for c in frame.columns]
    return pd.DataFrame({
        "sector": frame["marketname"].str.strip().values,
        "category": frame["groupname"].str.replace("Category -", "", regex=False).str.strip().values,
    }, index=frame["ticker"].str.strip().str.upper()).loc[lambda f: ~f.index.duplicated()]
