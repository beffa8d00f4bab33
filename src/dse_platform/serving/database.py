"""The serving database: what the stream wrote and what the dashboard reads.

One SQLAlchemy Core schema runs unchanged on PostgreSQL (psycopg2) and on the embedded
SQLite default; alembic migrations (contracts/migrations) create and change it. Every
write is an upsert on the natural key, and a row whose values did not change is left
alone, so a replayed micro-batch changes nothing, not even a timestamp.

Timestamps are timezone-aware UTC on the way in and on the way out, on both backends
(SQLite itself keeps no time zone; :class:`UtcDateTime` restores it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Boolean,
    Connection,
    Date,
    Engine,
    Executable,
    Float,
    Integer,
    LargeBinary,
    Table,
    TypeDecorator,
    create_engine,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy import column as sa_column
from sqlalchemy import event as sa_event
from sqlalchemy import table as sa_table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.contracts.tables import METADATA, VERSION_TABLE, model_events, utcnow
from dse_platform.errors import PlatformError

#: the serving schema's alembic scripts (shipped as package data)
MIGRATIONS_DIR = Path(tables.__file__).with_name("migrations")

log = logging.getLogger(__name__)

#: alembic runs migrations through module-level state: two threads of one process must take turns
_MIGRATING = threading.Lock()


def _first_line(exc: BaseException | None) -> str:
    """The driver's message alone: SQLAlchemy appends the statement and a link on further lines."""
    return (str(getattr(exc, "orig", exc)).strip().splitlines() or [""])[0]


@functools.cache
def _engine_for(url: str) -> Engine:
    """One pooled engine per database for the whole process; only a database that answered is remembered."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, pool_pre_ping=True, connect_args={"timeout": 30})
        # WAL lets the dashboard read while the stream writes; the timeout waits out the other writer.
        sa_event.listen(eng, "connect", lambda dbapi_conn, _: dbapi_conn.execute("PRAGMA journal_mode=WAL"))
    else:
        eng = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    try:
        with eng.connect():
            pass
    except OperationalError as exc:
        eng.dispose()
        where = parsed.render_as_string(hide_password=True)
        raise PlatformError(
            f"serving database {where} is unreachable: {_first_line(exc)}",
            "start the platform with `dse up`, or point DSE_DB_URL at a running database",
        ) from exc
    return eng


def engine(settings: Settings) -> Engine:
    """The serving database's engine, checked to answer, so an absent database fails here with the fix."""
    return _engine_for(settings.serving_db_url)


def alembic_config(conn: Connection) -> Config:
    """Alembic's configuration for the serving schema on an open connection (no alembic.ini).

    Also what writes the next revision, from a database at head:
    ``command.revision(alembic_config(conn), "what changed", rev_id="0002", autogenerate=True)``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = conn
    return config


def head_revision() -> str:
    """The newest revision the shipped migrations define."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def schema_revision(eng: Engine) -> str | None:
    """The serving schema's migration revision; None for a database never migrated."""
    with eng.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def migrate(eng: Engine) -> None:
    """Bring the serving schema to the newest revision; safe at every start, and from two processes at once.

    A database made before migrations existed is adopted (its rows kept) by the baseline revision.
    When two processes migrate together, one loses the race on the same DDL: it waits a moment and
    retries once, finding the schema already at head.
    """
    head = head_revision()
    where = eng.url.render_as_string(hide_password=True)
    retrying = Retrying(
        stop=stop_after_attempt(2), wait=wait_fixed(1), reraise=True, retry=retry_if_exception_type(DBAPIError),
        before_sleep=lambda state: log.warning("migrating %s failed (%s); checking whether another process did it",
                                               where, _first_line(state.outcome.exception())))
    try:
        for attempt in retrying:
            with attempt, _MIGRATING:
                if schema_revision(eng) == head:
                    return
                with eng.begin() as conn:
                    command.upgrade(alembic_config(conn), "head")
    except DBAPIError as exc:
        raise PlatformError(f"migrating the serving database {where} to revision {head} failed: {_first_line(exc)}",
                            "check that the database user may create tables, then start again") from exc


def _plain(value: Any) -> Any:
    """What the driver should see: None for every pandas/numpy missing value, Python scalars for numpy ones."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def _as_date(value: Any) -> dt.date | None:
    """Dates arrive as date, datetime/Timestamp or ISO text (Kafka JSON); SQLite accepts only ``date``."""
    if value is None or type(value) is dt.date:
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date.fromisoformat(value)


def _known(table: Table, names: list[str]) -> None:
    unknown = sorted(set(names) - set(table.c.keys()))
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(unknown)}")


def _columns(table: Table, names: list[str]) -> list[str]:
    """The primary-key columns the rows name, after refusing columns the table lacks and missing key columns."""
    _known(table, names)
    missing = sorted(c.name for c in table.primary_key.columns if c.name not in names and c.server_default is None)
    if missing:
        raise ValueError(f"rows for {table.name} lack key column(s) {', '.join(missing)}")
    return [c.name for c in table.primary_key.columns if c.name in names]


def _records(table: Table, rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> tuple[list[str], list[dict]]:
    """The rows as plain dicts over one column list (a key missing from some rows is NULL there)."""
    if isinstance(rows, pd.DataFrame):
        names = [str(c) for c in rows.columns]
        columns = [rows[c].tolist() for c in rows.columns]
    else:
        names = list(dict.fromkeys(k for row in rows for k in row))
        columns = [[row.get(n) for row in rows] for n in names]
    _known(table, names)
    cleaned = [
        [_as_date(_plain(v)) for v in values] if isinstance(table.c[name].type, Date) else [_plain(v) for v in values]
        for name, values in zip(names, columns, strict=True)
    ]
    return names, [dict(zip(names, values, strict=True)) for values in zip(*cleaned, strict=True)]


#: from this many rows a PostgreSQL upsert streams them with COPY into a temporary table and merges that in one
#: INSERT ... SELECT ... ON CONFLICT: binding the 200,000 parameter rows of a 50,000-bar micro-batch took ~15 s
#: (bench/profile_stream.py), COPY of text built column by column a fraction of it; below it, one multi-row
#: statement is quicker than a table
COPY_ROWS = 1_000


def upsert(target: Connection | Engine, table: Table, rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
           update: bool = True) -> int:
    """Insert rows, or on a primary-key clash update the given columns (``update=False``: keep the stored row).

    The conflict target is the whole primary key. A key column with a server default may be left out of every
    row (the database fills it in, e.g. ``role`` = production); any other key column is required.
    A stored row equal to the incoming one is not touched (its stamp column stays), so writing the same rows
    again leaves the table identical. Rows repeating a key within one call collapse to the one that would
    win if applied in order (the last when updating, the first otherwise): PostgreSQL refuses to update a
    row twice in one statement. Returns the number of rows submitted after that collapse.
    """
    if not len(rows):
        return 0
    if len(rows) >= COPY_ROWS and target.dialect.name == "postgresql":
        frame = rows if isinstance(rows, pd.DataFrame) else _object_frame(rows)
        names = [str(c) for c in frame.columns]
        keys = _columns(table, names)
        text_columns = _copy_columns(table, frame.set_axis(names, axis=1))
        text_columns = text_columns[~text_columns[keys].duplicated(keep="last" if update else "first")]
        lines = ["\t".join(fields) for fields in zip(*(text_columns[n].tolist() for n in names), strict=True)]
        with target.begin() if isinstance(target, Engine) else contextlib.nullcontext(target) as conn:
            _copy_upsert(conn, table, names, lines, update)
        return len(lines)
    names, records = _records(table, rows)
    keys = _columns(table, names)
    unique: dict[tuple, dict] = {}
    for record in records:
        key = tuple(record[k] for k in keys)
        if update or key not in unique:
            unique[key] = record
    # An engine gets its own transaction; a connection's caller owns the transaction.
    with target.begin() if isinstance(target, Engine) else contextlib.nullcontext(target) as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = _on_conflict(dialect.insert(table), table, names, update)
        # With ON CONFLICT, SQLAlchemy batches rows into multi-row INSERTs (its "insertmanyvalues", 1,000 rows a
        # statement) only for a statement that returns rows; without RETURNING psycopg2 sends one statement per
        # row. The keys returned go unread.
        conn.execute(stmt.returning(*table.primary_key.columns), list(unique.values()))
        return len(unique)


def _object_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Dict rows as object columns (a key missing from some rows is None there): pandas' own constructor would
    make an integer column with a gap float64, and integers beyond 2**53 would lose digits."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    return pd.DataFrame({n: pd.Series([row.get(n) for row in rows], dtype=object) for n in names})


def _on_conflict(stmt: Any, table: Table, names: list[str], update: bool) -> Any:
    """The upsert's conflict clause: update the changed columns (and stamps) of a row that differs, or keep it."""
    compared = [c for c in table.c if c.name in names and not c.primary_key and not c.info.get("stamp")]
    if update and compared:
        stamps = [c for c in table.c if c.info.get("stamp")]
        return stmt.on_conflict_do_update(
            index_elements=list(table.primary_key.columns),
            set_={c.name: stmt.excluded[c.name] for c in compared + stamps},
            where=or_(*(c.is_distinct_from(stmt.excluded[c.name]) for c in compared)),
        )
    return stmt.on_conflict_do_nothing(index_elements=list(table.primary_key.columns))


#: COPY's text format: NULL, and the characters a value must escape
_NULL = "\\N"
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))
_POSTGRESQL = postgresql.dialect()  # what a TypeDecorator's bind step is told it writes to


def _copy_text(value: Any, column_type: Any) -> str:
    """One value in COPY's text format, for a column without a vectorised form (bytea, checked timestamps)."""
    value = _plain(value)
    if isinstance(column_type, TypeDecorator):
        value = column_type.process_bind_param(value, _POSTGRESQL)
    if value is None:
        return _NULL
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, dt.date):  # datetime too: isoformat keeps its offset
        return value.isoformat()
    return _escaped(str(value))


def _escaped(text_value: str) -> str:
    for char, escape in _ESCAPES:
        text_value = text_value.replace(char, escape)
    return text_value


def _copy_columns(table: Table, frame: pd.DataFrame) -> pd.DataFrame:
    """Every column of the rows as COPY text, vectorised by the table column's type (NULL as ``\\N``)."""
    out: dict[str, pd.Series] = {}
    for name in frame.columns:
        kind, values = table.c[name].type, frame[name].reset_index(drop=True)
        if isinstance(kind, TypeDecorator | LargeBinary):
            try:
                out[name] = pd.Series([_copy_text(v, kind) for v in values], dtype=object)
            except ValueError as exc:  # what the statement path's bind step refuses (a naive timestamp), alike
                raise StatementError(str(exc), f"COPY {table.name} ({name})", None, exc) from exc
            continue
        missing = values.isna().to_numpy()
        if isinstance(kind, Date):
            text_values = pd.to_datetime(values.where(~missing, None), format="ISO8601").dt.strftime("%Y-%m-%d")
        elif isinstance(kind, Float):
            text_values = pd.to_numeric(values).astype("float64").astype(str)  # str(float) round-trips exactly
        elif isinstance(kind, Integer):
            text_values = values.astype("Int64").astype(str)
        elif isinstance(kind, Boolean):
            text_values = values.astype("boolean").astype(str)
        else:
            text_values = values.where(~missing, "").astype(str)
            if any(char in "".join(text_values) for char, _ in _ESCAPES):  # one scan in C; escaping is rare
                text_values = text_values.map(_escaped)
        out[name] = text_values.where(~missing, _NULL)
    return pd.DataFrame(out)


def _copy_upsert(conn: Connection, table: Table, names: list[str], lines: list[str], update: bool) -> None:
    """COPY the lines into a temporary table of the given columns, then merge it with one conflict-aware INSERT."""
    quote = conn.dialect.identifier_preparer.quote
    stage = f"dse_stage_{table.name}"
    columns = ", ".join(quote(n) for n in names)
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS SELECT {columns} "
                         f"FROM {quote(table.name)} WITH NO DATA")
    with conn.connection.dbapi_connection.cursor() as cursor:
        cursor.copy_expert(f"COPY {stage} ({columns}) FROM STDIN", io.StringIO("\n".join(lines) + "\n"))
    staged = sa_table(stage, *(sa_column(n) for n in names))
    stamps = [c for c in table.c if c.info.get("stamp") and c.name not in names]
    now = utcnow()
    stmt = postgresql.insert(table).from_select(names + [c.name for c in stamps], select(
        *(staged.c[n] for n in names), *(literal(now, c.type).label(c.name) for c in stamps)))
    conn.execute(_on_conflict(stmt, table, names, update))
    conn.exec_driver_sql(f"DROP TABLE {stage}")


def record_event(eng: Engine, event: str, model_name: str, version: str | None = None,
                 previous_version: str | None = None, source: str = "", details: dict | None = None) -> None:
    """Append one model lifecycle event (promotion, reload, alert ...) for the dashboard's history."""
    with eng.begin() as conn:
        conn.execute(model_events.insert().values(
            at=utcnow(), event=event, model_name=model_name, version=version, previous_version=previous_version,
            source=source, details=json.dumps(details or {}, sort_keys=True, default=str),
        ))


def read_events(eng: Engine, limit: int = 50) -> pd.DataFrame:
    """The latest model events, newest first (ties broken by insertion order)."""
    query = select(model_events).order_by(model_events.c.at.desc(), model_events.c.id.desc()).limit(limit)
    return read_frame(eng, query)


def read_frame(eng: Engine, sql_or_table: str | Table | Executable, **params: Any) -> pd.DataFrame:
    """A query's rows as a frame: a table (or its name) whole, a SQLAlchemy statement, or SQL text with params.

    Tables and statements come back with the schema's Python types (aware UTC timestamps); raw SQL text gets
    whatever the driver returns (on SQLite, timestamps as text).
    """
    if isinstance(sql_or_table, str):
        sql_or_table = METADATA.tables.get(sql_or_table, sql_or_table)
    if isinstance(sql_or_table, str):
        query: Executable = text(sql_or_table)
    elif isinstance(sql_or_table, Table):
        query = select(sql_or_table)
    else:
        query = sql_or_table
    with eng.connect() as conn:
        result = conn.execute(query, params)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
