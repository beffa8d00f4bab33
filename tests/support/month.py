"""A simulated trading month, driven through the project's DAGs one logical date at a time.

Run by tests/e2e/test_month.py as ``python -m tests.support.month`` in the platform's Airflow
environment (the one `dse airflow` gives the ``airflow`` CLI). Each DAG run is ``DAG.test()``,
the call behind ``airflow dags test``, made from this one process so that the month does not
pay Airflow's start-up some sixty times.

For every session, in order: the live poller reads a fixture of DSE's live page holding the
session's real rows, with its clock set to the session's midday (the live DAG's task is the
same poller on the wall clock); ``dse_end_of_day`` publishes the session's official bars from
a fixture of the day-end archive; the driver waits until the supervised streaming job has
stored every one of them; then ``dse_nightly_retrain`` and ``dse_monitoring`` run for the date.
One JSON line per session goes to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
from sqlalchemy import func, select

from dse_platform.config import PROJECT_DIR, get_settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.data.trading_calendar import DHAKA
from dse_platform.serving import database
from dse_platform.streams import kafka_io
from dse_platform.streams.live import LivePoller
from tests.support.livepages import day_end_rows_from_bars, render_day_end_page, render_page


class Pages:
    """DSE's two pages for the session being played, from the real bars of a source store."""

    def __init__(self, source: Path, sessions: list[dt.date]) -> None:
        bars = store.read_bars(source, start=sessions[0] - dt.timedelta(days=14), end=sessions[-1])
        self.by_day = {day: part for day, part in bars.groupby("date")}
        self.day = sessions[0]

    def rows(self, day: dt.date):
        days = sorted(d for d in self.by_day if d <= day)
        shown = days[-1]  # on a day without a session DSE shows the last one
        previous = self.by_day[days[-2]].set_index("symbol")["close"].to_dict() if len(days) > 1 else {}
        return day_end_rows_from_bars(self.by_day[shown], previous)

    def live(self) -> str:
        return render_page(self.rows(self.day), dt.datetime.combine(self.day, dt.time(11, 0), DHAKA))

    def day_end(self, query: str) -> str:
        return render_day_end_page(self.rows(dt.date.fromisoformat(parse_qs(query)["startDate"][0])))


def serve(pages: Pages, port: int) -> ThreadingHTTPServer:
    """The fixture site on loopback: /day_end_archive.php?startDate=D and any other path as the live page."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            body = (pages.day_end(url.query) if url.path.endswith("day_end_archive.php") else pages.live()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - started


def stored_official_bars(engine, day: dt.date) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(tables.bars).where(
            tables.bars.c.date == day, tables.bars.c.source == "eod")).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, required=True, help="store holding the month's real bars")
    parser.add_argument("--sessions", required=True, help="comma-separated ISO dates, in order")
    parser.add_argument("--port", type=int, required=True, help="port of the fixture site (DSE_EOD_URL's)")
    parser.add_argument("--skip-retrain", default="", help="sessions whose nightly retrain is not run")
    args = parser.parse_args()
    sessions = [dt.date.fromisoformat(d) for d in args.sessions.split(",")]
    skip_retrain = {dt.date.fromisoformat(d) for d in args.skip_retrain.split(",") if d}

    from airflow.dag_processing.dagbag import DagBag

    settings = get_settings()
    engine = database.engine(settings)
    pages = Pages(args.source, sessions)
    server = serve(pages, args.port)
    dags = DagBag(str(PROJECT_DIR / "dags"))
    producer = kafka_io.producer(settings, client_id="dse-month-live")

    def run_dag(dag_id: str, day: dt.date, at: dt.time) -> tuple[str, float]:
        started = time.monotonic()
        run = dags.get_dag(dag_id).test(logical_date=dt.datetime.combine(day, at, DHAKA))
        return str(run.state), time.monotonic() - started

    try:
        for day in sessions:
            pages.day = day
            took: dict[str, float] = {}
            calendar = store.read_calendar(settings.store_dir)
            midday = dt.datetime.combine(day, dt.time(11, 0), DHAKA)
            with httpx.Client(timeout=settings.live_http_timeout_s) as client:
                started = time.monotonic()
                LivePoller(settings, client, producer, calendar, now=lambda m=midday: m, sleep=lambda _: None,
                           url=settings.live_url).run(max_polls=2)
                took["live"] = time.monotonic() - started
            traded = sum(1 for row in pages.rows(day) if row.traded)
            eod, took["eod"] = run_dag("dse_end_of_day", day, dt.time(15, 0))
            took["stream"] = wait_until(lambda d=day, n=traded: stored_official_bars(engine, d) >= n, 600,
                                        f"the stream to store the {traded} official bars of {day}")
            retrain = "skipped"
            if day not in skip_retrain:
                retrain, took["retrain"] = run_dag("dse_nightly_retrain", day, dt.time(15, 30))
            monitoring, took["monitoring"] = run_dag("dse_monitoring", day, dt.time(16, 0))
            print(json.dumps({"day": str(day), "traded": traded, "eod": eod, "retrain": retrain,
                              "monitoring": monitoring, "seconds": {k: round(v, 1) for k, v in took.items()}}),
                  flush=True)
    finally:
        producer.close(timeout=30)
        server.shutdown()


if __name__ == "__main__":
    main()
