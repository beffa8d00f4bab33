"""The serving schema's alembic migrations, on SQLite files."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, Table, create_engine, insert, inspect, select
from sqlalchemy.exc import OperationalError

import dse_platform
from dse_platform.config import PROJECT_DIR
from dse_platform.contracts.tables import (
    METADATA,
    VERSION_TABLE,
    bars,
    dead_letters,
    prediction_outcomes,
    predictions,
)
from dse_platform.errors import PlatformError
from dse_platform.serving import database

ROW = {"symbol": "ACI", "date": dt.date(2025, 10, 22), "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
       "source": "replay", "produced_at": 1}


@pytest.fixture
def eng(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    yield engine
    engine.dispose()


def differences(eng: Engine) -> list:
    with eng.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE,
                                                                       "compare_type": True}), METADATA)


def test_fresh_database_reaches_head_with_exactly_the_declared_schema(eng: Engine) -> None:
    assert database.schema_revision(eng) is None
    database.migrate(eng)
    assert database.schema_revision(eng) == database.head_revision() == "0004"
    assert set(inspect(eng).get_table_names()) == {*METADATA.tables, VERSION_TABLE}
    assert differences(eng) == []


def test_declared_schema_differing_from_the_migrations_is_noticed(eng: Engine) -> None:
    database.migrate(eng)
    with eng.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_bars_date")
    assert [d[0] for d in differences(eng)] == ["add_index"]


def test_second_migrate_runs_no_migration(eng: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    database.migrate(eng)

    def no_upgrade(*_: object) -> None:
        raise AssertionError("upgrade ran on a database at head")

    monkeypatch.setattr(command, "upgrade", no_upgrade)
    database.migrate(eng)
    assert database.schema_revision(eng) == database.head_revision()


def test_database_made_by_create_all_is_adopted_with_its_rows(eng: Engine) -> None:
    METADATA.create_all(eng)
    database.upsert(eng, bars, [ROW])
    database.migrate(eng)
    assert database.schema_revision(eng) == database.head_revision()
    assert database.read_frame(eng, bars).loc[0, ["symbol", "date", "close"]].tolist() == ["ACI", ROW["date"], 1.5]
    assert differences(eng) == []


def test_older_create_all_database_gets_the_tables_it_lacked(eng: Engine) -> None:
    METADATA.create_all(eng, tables=[t for name, t in METADATA.tables.items() if name != "features"])
    database.migrate(eng)
    assert "features" in inspect(eng).get_table_names()
    assert differences(eng) == []


def test_loser_of_a_concurrent_migration_finds_the_winners_schema(eng: Engine,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    upgrade = command.upgrade
    calls = []

    def race(config, revision: str) -> None:
        calls.append(revision)
        with eng.begin() as other:  # another process got there first
            upgrade(database.alembic_config(other), revision)
        raise OperationalError("CREATE TABLE bars", {}, Exception("table bars already exists"))

    monkeypatch.setattr(command, "upgrade", race)
    database.migrate(eng)
    assert calls == ["head"] and database.schema_revision(eng) == database.head_revision()


def test_migration_that_keeps_failing_names_database_and_revision(eng: Engine,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(config, revision: str) -> None:
        calls.append(revision)
        raise OperationalError("CREATE TABLE bars", {}, Exception("attempt to write a readonly database"))

    monkeypatch.setattr(command, "upgrade", broken)
    with pytest.raises(PlatformError, match=r"serving\.db to revision 0004 failed: attempt to write a readonly"):
        database.migrate(eng)
    assert len(calls) == 2


def test_downgrade_to_base_removes_the_serving_tables(eng: Engine) -> None:
    database.migrate(eng)
    with eng.begin() as conn:
        command.downgrade(database.alembic_config(conn), "base")
    assert set(inspect(eng).get_table_names()) == {VERSION_TABLE}


def test_every_migration_file_ships_as_package_data() -> None:
    package = Path(dse_platform.__file__).parent
    patterns = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {path for pattern in patterns["dse_platform"] for path in package.glob(pattern)}
    files = {p for p in database.MIGRATIONS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert files and files <= shipped


def test_threads_of_one_process_migrate_one_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    engines = [create_engine(url, connect_args={"timeout": 30}) for _ in range(4)]
    with ThreadPoolExecutor(len(engines)) as pool:
        list(pool.map(database.migrate, engines))
    assert {database.schema_revision(e) for e in engines} == {database.head_revision()}
    assert differences(engines[0]) == []
    for e in engines:
        e.dispose()


def test_0002_adds_raw_size_to_a_0001_database_keeping_its_dead_letters(eng: Engine) -> None:
    with eng.begin() as conn:
        command.upgrade(database.alembic_config(conn), "0001")
    with eng.begin() as conn:
        conn.exec_driver_sql("INSERT INTO dead_letters (topic, partition, \"offset\", raw, reason, received_at) "
                             "VALUES ('t', 0, 1, x'7b', 'invalid_json', '2026-11-24 00:00:00')")
    database.migrate(eng)
    assert database.schema_revision(eng) == database.head_revision() and differences(eng) == []
    letters = database.read_frame(eng, dead_letters)
    assert letters[["offset", "reason"]].values.tolist() == [[1, "invalid_json"]] and letters["raw_size"].isna().all()
    database.upsert(eng, dead_letters, [{"topic": "t", "partition": 0, "offset": 2, "raw": b"x" * 4096,
                                         "raw_size": 10**6, "reason": "too_large"}])
    assert database.read_frame(eng, dead_letters)["raw_size"].tolist()[1] == 10**6


def test_0002_downgrades_to_the_0001_schema(eng: Engine) -> None:
    database.migrate(eng)
    with eng.begin() as conn:
        command.downgrade(database.alembic_config(conn), "0001")
    assert "raw_size" not in {c["name"] for c in inspect(eng).get_columns("dead_letters")}
    assert {i["name"] for i in inspect(eng).get_indexes("dead_letters")} == {"ix_dead_letters_received_at"}



PREDICTION = {"symbol": "ACI", "date": dt.date(2025, 10, 22), "probability": 0.625, "label": 1,
              "model_name": "dse-direction", "model_version": "3", "feature_version": "f1", "produced_at": 7,
              "scored_at": dt.datetime(2026, 11, 24, tzinfo=dt.UTC)}
OUTCOME = {"symbol": "ACI", "date": dt.date(2025, 10, 22), "next_date": dt.date(2025, 10, 23),
           "probability": 0.625, "label": 1, "actual": 0, "correct": False, "model_version": "3",
           "resolved_at": dt.datetime(2026, 11, 24, tzinfo=dt.UTC)}


def rows(eng: Engine, table: Table) -> list[dict]:
    return database.read_frame(eng, table).to_dict("records")


@pytest.fixture
def served_0002(eng: Engine) -> Engine:
    """A database at 0002 holding one prediction and its outcome, written the way 0002 knew: without a role."""
    with eng.begin() as conn:
        command.upgrade(database.alembic_config(conn), "0002")
        for table, row in ((predictions, PREDICTION), (prediction_outcomes, OUTCOME)):
            # through the declared columns' types, but naming only 0002's columns (role is not one)
            conn.execute(insert(table).values({table.c[k]: v for k, v in row.items()}).inline())
    return eng


def test_0003_keys_predictions_and_outcomes_by_role_and_makes_old_rows_production(served_0002: Engine) -> None:
    database.migrate(served_0002)
    assert database.schema_revision(served_0002) == "0004" and differences(served_0002) == []
    assert rows(served_0002, predictions) == [{**PREDICTION, "role": "production"}]
    assert rows(served_0002, prediction_outcomes) == [{**OUTCOME, "role": "production"}]
    for table in (predictions, prediction_outcomes):
        assert inspect(served_0002).get_pk_constraint(table.name)["constrained_columns"] == ["symbol", "date", "role"]
        scored_at = {"ix_predictions_role_scored_at": ["role", "scored_at"]} if table is predictions else {}
        assert {i["name"]: i["column_names"] for i in inspect(served_0002).get_indexes(table.name)} == {
            f"ix_{table.name}_date": ["date"], f"ix_{table.name}_role_date": ["role", "date"], **scored_at}
    # the shadow row of the same bar sits beside the served one; a replay of either changes nothing
    shadow = {**PREDICTION, "model_version": "4", "probability": 0.25, "label": 0, "role": "challenger"}
    for _ in range(2):
        database.upsert(served_0002, predictions, [shadow, {**PREDICTION, "role": "production"}])
    assert sorted((r["role"], r["model_version"]) for r in rows(served_0002, predictions)) == [
        ("challenger", "4"), ("production", "3")]


def test_0003_downgrade_drops_the_shadow_rows_and_role_and_upgrades_again(served_0002: Engine) -> None:
    database.migrate(served_0002)
    database.upsert(served_0002, predictions, [{**PREDICTION, "model_version": "4", "role": "challenger"}])
    database.upsert(served_0002, prediction_outcomes, [{**OUTCOME, "model_version": "4", "role": "challenger"}])
    with served_0002.begin() as conn:
        command.downgrade(database.alembic_config(conn), "0002")
    for table, row in ((predictions, PREDICTION), (prediction_outcomes, OUTCOME)):
        assert "role" not in {c["name"] for c in inspect(served_0002).get_columns(table.name)}
        assert inspect(served_0002).get_pk_constraint(table.name)["constrained_columns"] == ["symbol", "date"]
        assert {i["name"] for i in inspect(served_0002).get_indexes(table.name)} == {f"ix_{table.name}_date"}
        with served_0002.connect() as conn:
            stored = conn.execute(select(*(table.c[k] for k in row))).mappings().all()
        assert [dict(r) for r in stored] == [row]
    database.migrate(served_0002)
    assert differences(served_0002) == [] and rows(served_0002, predictions) == [{**PREDICTION, "role": "production"}]
