"""Dashboard pages on a million predictions: each page's first render in Chromium beside the page's own SQL alone.

Fills a serving database (default a SQLite file under var/bench/dashboard/; ``--db-url`` for
PostgreSQL, written as its owner and read, like the dashboard, through ``--reader-url``) with
``--rows`` production predictions: one bar, one prediction and, but for the last session, one
outcome per instrument and session, as if streamed live (each session scored at its close,
today last), plus the challenger's last sessions, dead letters and model events; written with
the serving database's upserts. A database already holding them is reused, not refilled.

Then, for each page:
1. its SQL alone: the statements the page itself runs (captured while Streamlit's AppTest runs
   the page headless), run again on their own through the dashboard's read-only engine, first
   (cold) and best of three (warm), with each statement's plan (EXPLAIN QUERY PLAN on SQLite,
   EXPLAIN on PostgreSQL), so a scan of a big table shows;
2. its first render in Debian's Chromium: a new browser context, from navigation until the
   page's closing caption shows (its script ran to the end), on a server warmed by one visit.
``--propose-indexes`` then adds the indexes this benchmark asks for and measures again.

Needs Chromium (`make test-deps`); no service. Never part of CI; at full size, run it once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, create_engine, event, func, select, text

from dse_platform.config import PROJECT_DIR, Settings, get_settings
from dse_platform.contracts import tables
from dse_platform.dashboard import connection, server
from dse_platform.dashboard.queries import MARKET_INDICES
from dse_platform.data.trading_calendar import DHAKA, weekday_calendar
from dse_platform.serving import database

sys.path.insert(0, str(PROJECT_DIR))  # the browser helpers the UI tests use: Debian's Chromium, never a download
from tests.support.browser import chromium, new_page
from tests.support.platform import free_port, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Figure

PAGES = ("market", "instrument", "model", "pipeline")
CHALLENGER_SESSIONS = 20
DEAD_LETTERS = 5_000
CHUNK = 50_000
#: what this benchmark found the pages need beyond the shipped schema
PROPOSED_INDEXES = ("CREATE INDEX IF NOT EXISTS ix_predictions_role_scored_at ON predictions (role, scored_at)",)
#: what the "floor" render is: a page that runs next to no SQL
FLOOR = "the Instrument page before a code is typed (Streamlit and Chromium alone)"


def sessions_to_today(count: int) -> list[dt.date]:
    """The last ``count`` Sunday-Thursday sessions up to today (Asia/Dhaka)."""
    calendar = weekday_calendar()
    day = dt.datetime.now(DHAKA).date()
    days = [day if calendar.is_session(day) else calendar.previous_session(day)]
    while len(days) < count:
        days.append(calendar.previous_session(days[-1]))
    return days[::-1]


def _write(engine: Engine, table, frame: pd.DataFrame) -> None:
    for start in range(0, len(frame), CHUNK):
        database.upsert(engine, table, frame.iloc[start:start + CHUNK])


def fill(engine: Engine, rows: int, instruments: int, seed: int = 1) -> None:
    """Bars, predictions and outcomes for ``instruments`` x ``rows / instruments`` sessions, streamed-live stamps."""
    days = sessions_to_today(rows // instruments)
    symbols = [*MARKET_INDICES, *(f"S{i:04d}" for i in range(instruments - len(MARKET_INDICES)))]
    rng = np.random.default_rng(seed)
    n = len(days) * len(symbols)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (len(days), len(symbols))), axis=0)).round(1).ravel()
    date = np.repeat(np.array(days, dtype="datetime64[D]"), len(symbols))
    symbol = np.tile(symbols, len(days))
    closed_at = pd.to_datetime(date) + pd.Timedelta(hours=8, minutes=30)  # 14:30 in Dhaka
    lag_ms = rng.integers(300, 5_000, n)
    scored_at = (closed_at + pd.to_timedelta(lag_ms, unit="ms")).tz_localize("UTC")
    produced_at = (closed_at.astype("int64") // 1_000_000).to_numpy()
    dates = pd.Series(date).dt.date
    bars = pd.DataFrame({"symbol": symbol, "date": dates, "open": close, "high": close * 1.01, "low": close * 0.99,
                         "close": close, "volume": rng.integers(1_000, 1_000_000, n).astype(float),
                         "trades": rng.integers(1, 5_000, n), "value_mn": close * 0.1, "source": "replay",
                         "produced_at": produced_at, "updated_at": scored_at})
    p = rng.uniform(0.05, 0.95, n)
    predictions = pd.DataFrame({"symbol": symbol, "date": dates, "probability": p, "label": (p >= 0.5).astype(int),
                                "model_name": "dse-direction", "model_version": "7", "feature_version": "bench",
                                "produced_at": produced_at, "scored_at": scored_at, "role": "production"})
    up = (np.diff(close.reshape(len(days), len(symbols)), axis=0) > 0).astype(int).ravel()
    resolved = predictions.iloc[: n - len(symbols)]
    outcomes = resolved[["symbol", "date", "probability", "label", "model_version", "role"]].assign(
        next_date=np.repeat(days[1:], len(symbols)), actual=up, correct=resolved["label"].to_numpy() == up,
        resolved_at=scored_at[len(symbols):])
    shadow = predictions[predictions["date"] >= days[-CHALLENGER_SESSIONS]].assign(role="challenger",
                                                                                    model_version="8")
    started = time.perf_counter()
    for table, frame in ((tables.bars, bars), (tables.predictions, pd.concat([predictions, shadow])),
                         (tables.prediction_outcomes, outcomes)):
        _write(engine, table, frame)
        print(f"fill: {len(frame):,} rows into {table.name} ({time.perf_counter() - started:.0f} s so far)",
              flush=True)
    letters = pd.DataFrame({"topic": "dse.bars.v1", "partition": np.arange(DEAD_LETTERS) % 3,
                            "offset": np.arange(DEAD_LETTERS), "raw": [b'{"close": "x"}'] * DEAD_LETTERS,
                            "raw_size": 14, "reason": np.where(np.arange(DEAD_LETTERS) % 5, "bad_number",
                                                               "invalid_json"),
                            "received_at": pd.Timestamp.now(tz="UTC") - pd.to_timedelta(
                                np.arange(DEAD_LETTERS) * 60, unit="s")})
    _write(engine, tables.dead_letters, letters)
    for i in range(100):
        database.record_event(engine, ("promoted", "held", "reloaded", "alert")[i % 4], "dse-direction",
                              version=str(i % 8), source="nightly retrain 2026-01-01" if i % 4 == 1 else "bench",
                              details={"reason": f"bench event {i}"})


def _page_script(page: str, code: str) -> None:
    """One page rendered headless (Streamlit's AppTest runs this function's body as the app script)."""
    import streamlit as st

    from dse_platform.config import get_settings
    from dse_platform.dashboard import connection, queries
    from dse_platform.dashboard.views import instrument, market, model, pipeline

    settings = get_settings()
    engine = connection.engine(settings)
    if page == "instrument":
        st.session_state.setdefault(instrument.CODE_KEY, code)
    queries.data_state(engine)
    {"market": market.render, "instrument": instrument.render, "model": model.render,
     "pipeline": pipeline.render}[page](settings, engine)


def page_statements(engine: Engine, page: str, code: str) -> list[tuple[str, object]]:
    """The SQL the page runs, captured from the page itself."""
    from streamlit.testing.v1 import AppTest

    captured: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        app = AppTest.from_function(_page_script, args=(page, code), default_timeout=600).run()
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    if app.exception:
        raise SystemExit(f"{page}: the page raised {app.exception[0].value}")
    return captured


def run_statements(engine: Engine, statements: list[tuple[str, object]]) -> float:
    started = time.perf_counter()
    with engine.connect() as conn:
        for statement, parameters in statements:
            conn.exec_driver_sql(statement, parameters).fetchall()
    return time.perf_counter() - started


def plan(engine: Engine, statement: str, parameters: object) -> str:
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).fetchall()
    return " | ".join(str(row[-1]) for row in rows)


def full_scans(engine: Engine, statements: list[tuple[str, object]]) -> list[str]:
    """Statements whose plan reads a whole big table or index (SQLite 'SCAN <table>', PostgreSQL 'Seq Scan on').

    A statement with LIMIT and no grouping stops early, whatever its plan says.
    """
    big = ("bars", "predictions", "prediction_outcomes", "features")
    found = []
    for statement, parameters in statements:
        if " LIMIT " in statement and " GROUP BY " not in statement:
            continue  # stops at the first rows it finds
        text_plan = plan(engine, statement, parameters)
        if re.search(rf"(SCAN|Seq Scan on) ({'|'.join(big)})\b", text_plan):
            found.append(f"{' '.join(statement.split())[:160]}\n      plan: {text_plan[:300]}")
    return found


def measure_sql(engine: Engine, code: str) -> dict[str, dict]:
    results = {}
    for page in PAGES:
        statements = page_statements(engine, page, code)
        cold = run_statements(engine, statements)
        warm = min(run_statements(engine, statements) for _ in range(3))
        results[page] = {"statements": len(statements), "cold_s": cold, "warm_s": warm,
                         "scans": full_scans(engine, statements)}
    return results


def measure_browser(env: dict[str, str], settings: Settings, code: str) -> dict[str, float]:
    from playwright.sync_api import expect, sync_playwright

    paths = {"market": "", "instrument": f"instrument?code={code}", "model": "model", "pipeline": "pipeline"}
    proc = subprocess.Popen(server.command(settings), env=env, cwd=PROJECT_DIR, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    times = {}
    try:
        wait_for(lambda: server.health(settings)[0], 60, "the dashboard")
        base = server.url(settings)
        with sync_playwright() as pw:
            browser = chromium(pw)
            for page_name in ("warm-up", "floor", *PAGES):
                page = new_page(browser)
                started = time.perf_counter()
                page.goto(f"{base}/{paths.get(page_name, 'instrument')}")
                expect(page.get_by_text(re.compile(r"^Drawn at "))).to_be_visible(timeout=600_000)
                expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=600_000)
                boxes = page.locator('[data-testid="stException"]')
                if boxes.count():
                    raise SystemExit(f"{page_name}: Streamlit exception: {boxes.first.inner_text()[:500]}")
                times[page_name] = time.perf_counter() - started
                page.context.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    times.pop("warm-up")
    return times


def report(title: str, sql: dict[str, dict], browser: dict[str, float]) -> None:
    print(f"\n{title}\nfloor: {browser['floor']:.2f}s to render {FLOOR}")
    print(f"{'page':<11} {'statements':>10} {'SQL cold':>9} {'SQL warm':>9} {'first render':>13}  goal < 1.5 s")
    for page in PAGES:
        s = sql[page]
        print(f"{page:<11} {s['statements']:>10} {s['cold_s']:>8.3f}s {s['warm_s']:>8.3f}s {browser[page]:>12.2f}s  "
              f"{'met' if browser[page] < 1.5 else 'not met'}")
    for page in PAGES:
        for scan in sql[page]["scans"]:
            print(f"  full scan on {page}: {scan}")


def prepare(rows: int, instruments: int, db_url: str | None = None, reader_url: str | None = None
            ) -> tuple[dict[str, str], Settings, Engine, Engine]:
    """Point this process at a dashboard over a filled database: (env, settings, writer, reader)."""
    home = PROJECT_DIR / "var" / "bench" / "dashboard"
    home.mkdir(parents=True, exist_ok=True)
    db_url = db_url or f"sqlite:///{home / f'serving-{rows}.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSE_")}
    env.update({"DSE_HOME": str(home / "var"), "DSE_DB_URL": db_url, "DSE_DASHBOARD_PORT": str(free_port()),
                "DSE_DASHBOARD_REFRESH_S": "0", **({"DSE_DASHBOARD_DB_URL": reader_url} if reader_url else {})})
    os.environ.update(env)
    get_settings.cache_clear()
    settings = get_settings()
    writer = create_engine(db_url)
    database.migrate(writer)
    with writer.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(tables.predictions)).scalar()
    if stored < rows:
        fill(writer, rows, instruments)
        if writer.dialect.name == "postgresql":
            with writer.begin() as conn:
                conn.execute(text("ANALYZE"))  # the planner's statistics, as autovacuum would leave them
    else:
        print(f"fill: reusing {db_url} ({stored:,} predictions)")
    return env, settings, writer, connection.engine(settings)


def run(quick: bool) -> list[Figure]:
    """Each page's first render beside its SQL alone (warm), on SQLite; QUICK on 50,000 predictions."""
    rows, instruments = (50_000, 100) if quick else (1_000_000, 400)
    saved = dict(os.environ)
    try:
        env, settings, _, reader = prepare(rows, instruments)
        code = "S0000"
        sql = measure_sql(reader, code)
        browser = measure_browser(env, settings, code)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    data = f"{rows:,} production predictions, {instruments} instruments, SQLite"
    figures = [Figure("dashboard", "first render, no SQL (floor)", "s", data, note=FLOOR)]
    figures[0].add(browser["floor"])
    for page in PAGES:
        alone = Figure("dashboard", f"{page}: its SQL alone (warm)", "s", data,
                       note=f"{sql[page]['statements']} statements")
        alone.add(sql[page]["warm_s"])
        render = Figure("dashboard", f"{page}: first render", "s", data, ceiling=alone.name, goal="< 1.5 s")
        render.add(browser[page])
        figures += [alone, render]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="production predictions")
    parser.add_argument("--instruments", type=int, default=400)
    parser.add_argument("--db-url", help="serving database to fill (default: SQLite under var/bench/dashboard)")
    parser.add_argument("--reader-url", help="read-only URL of that database (PostgreSQL: the dashboard's role)")
    parser.add_argument("--propose-indexes", action="store_true", help="then add PROPOSED_INDEXES, measure again")
    args = parser.parse_args()
    env, settings, writer, reader = prepare(args.rows, args.instruments, args.db_url, args.reader_url)
    code = "S0000"
    print(f"\n{args.rows:,} production predictions, {args.instruments} instruments, "
          f"{reader.url.render_as_string(hide_password=True)}")
    report("shipped schema", measure_sql(reader, code), measure_browser(env, settings, code))
    if args.propose_indexes:
        with writer.begin() as conn:
            for statement in PROPOSED_INDEXES:
                conn.execute(text(statement))
            if writer.dialect.name == "postgresql":
                conn.execute(text("ANALYZE"))
        report(f"with {'; '.join(PROPOSED_INDEXES)}", measure_sql(reader, code), measure_browser(env, settings, code))


if __name__ == "__main__":
    main()
