"""Where one micro-batch of the streaming job spends its time, stage by stage, on real replayed bars.

Spark is left out: the job's own functions run here on a micro-batch as Spark hands it over. The
bars replay would send (``replay.encode_day``) become Kafka rows; ``parse_batch`` reads them in
Arrow-sized chunks; the rows are grouped by instrument into the state function (``advance``, then
``features.compute`` and ``features.encode``, the window kept as JSON state); the sink scores the
output with the production model twice (production, and the same model as challenger: shadow
scoring costs what production does) and upserts it into a fresh database on the bench platform's
PostgreSQL, then publishes to Kafka. The previous micro-batch warms the state, as in a running job.
Each stage is wall time of the real function (wrapped, not sampled), given per 50,000 records.
What Spark adds on top (Kafka read, the shuffle into the state operator, Arrow transfers) is what
bench_stream's ceilings measure.

``python bench/profile_stream.py --py-spy`` records the same run with py-spy into
var/bench/profile/ (a flame graph) for a look at the lines inside each stage.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from dse_platform.config import PROJECT_DIR, Settings
from dse_platform.data import store
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.model import registry
from dse_platform.serving import database, parsing, sink, state
from dse_platform.serving.watcher import LoadedModel
from dse_platform.streams import kafka_io, replay

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Figure, platform

from tests.support.platform import fresh_database

BATCH = 50_000
#: Spark hands mapInPandas Arrow batches of this many rows (spark.sql.execution.arrow.maxRecordsPerBatch)
ARROW_BATCH = 10_000
#: the replayed history the two micro-batches come from: the last instruments' full windows
START = "2023-01-01"
STAGES = ("parse", "state: advance (bookkeeping)", "state: features.compute", "state: features.encode",
          "state: window JSON + output frame", "sink: decode features", "sink: score production",
          "sink: score challenger", "sink: upserts", "sink: publish to Kafka")


class _State:
    """The part of Spark's GroupState the state function uses."""

    def __init__(self) -> None:
        self.value: tuple | None = None

    @property
    def exists(self) -> bool:
        return self.value is not None

    @property
    def get(self) -> tuple:
        return self.value

    def update(self, value: tuple) -> None:
        self.value = value


class _Batch:
    """What foreachBatch passes the sink, reduced to toPandas (Spark's, through Arrow)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = pa.Table.from_pandas(frame, preserve_index=False).to_pandas(date_as_object=True)

    def toPandas(self) -> pd.DataFrame:
        return self.frame


class _Watcher:
    def __init__(self, loaded: LoadedModel) -> None:
        self.current = loaded


def kafka_rows(settings: Settings, records: int) -> pd.DataFrame:
    """The first ``records`` bars replay would send from START, as the Kafka source's rows."""
    bars = replay.load_bars(settings, pd.Timestamp(START).date(), None, None)
    values: list[bytes] = []
    for _, day in bars.groupby("date", sort=True):
        values += [value for _, value in replay.encode_day(day, int(time.time() * 1000))]
        if len(values) >= records:
            break
    values = values[:records]
    return pd.DataFrame({"value": values, "topic": settings.bars_topic, "partition": 0,
                         "offset": range(len(values))})


class Clock:
    """Seconds spent per stage, from functions wrapped while a run lasts."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    def wrap(self, stage: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started
        return timed

    @contextlib.contextmanager
    def patched(self, owner: object, name: str, stage: str) -> Iterator[None]:
        original = getattr(owner, name)
        setattr(owner, name, self.wrap(stage, original))
        try:
            yield
        finally:
            setattr(owner, name, original)


def run_batch(rows: pd.DataFrame, topic: str, states: dict[str, _State], calendar: TradingCalendar,
              clock: Clock | None = None) -> pd.DataFrame:
    """parse -> group by instrument -> state function: the state operator's output for the sink."""
    started = time.perf_counter()
    chunks = (rows.iloc[i:i + ARROW_BATCH] for i in range(0, len(rows), ARROW_BATCH))
    parsed = pd.concat(list(parsing.parse_batch(chunks, topic)), ignore_index=True)
    if clock is not None:
        clock.seconds["parse"] += time.perf_counter() - started
    update = state.make_state_function(calendar)
    out = []
    for symbol, group in parsed.groupby("symbol", sort=False):
        out += list(update((symbol,), iter([group.reset_index(drop=True)]), states.setdefault(symbol, _State())))
    return pd.concat(out, ignore_index=True)


def profile(settings: Settings, model: LoadedModel, rows: pd.DataFrame) -> dict[str, float]:
    """Seconds per stage of the second micro-batch of ``rows`` (the first warms the state)."""
    calendar = store.read_calendar(settings.store_dir)
    cfg = settings.model_copy(update={"db_url": fresh_database(settings),
                                      "predictions_topic": f"bench-profile-pred-{uuid.uuid4().hex[:6]}",
                                      "deadletter_topic": f"bench-profile-dead-{uuid.uuid4().hex[:6]}"})
    kafka_io.ensure_topics(cfg, [cfg.predictions_topic, cfg.deadletter_topic])
    states: dict[str, _State] = {}
    engine = database.engine(cfg)
    producer = kafka_io.BulkProducer(cfg, client_id="bench-profile")
    the_sink = sink.BatchSink(cfg, _Watcher(model), engine, producer, challenger=_Watcher(model))
    warm, batch = rows.iloc[:BATCH], rows.iloc[BATCH:2 * BATCH]
    the_sink(_Batch(run_batch(warm, cfg.bars_topic, states, calendar)), 0)
    clock = Clock()
    original_score = sink.BatchSink._predictions

    def score(self: sink.BatchSink, ready: pd.DataFrame, matrix: pd.DataFrame, role: str,
              loaded: LoadedModel) -> pd.DataFrame:
        return clock.wrap(f"sink: score {role}", original_score)(self, ready, matrix, role, loaded)

    with contextlib.ExitStack() as stack:
        stack.enter_context(clock.patched(state, "advance", "state: advance (bookkeeping)"))
        stack.enter_context(clock.patched(state.features, "compute", "state: features.compute"))
        stack.enter_context(clock.patched(state.features, "encode", "state: features.encode"))
        stack.enter_context(clock.patched(state, "_encode_window", "state: window JSON + output frame"))
        stack.enter_context(clock.patched(state, "_decode_window", "state: window JSON + output frame"))
        stack.enter_context(clock.patched(state, "typed", "state: window JSON + output frame"))
        stack.enter_context(clock.patched(sink.features, "decode", "sink: decode features"))
        stack.enter_context(clock.patched(sink.BatchSink, "_write", "sink: upserts"))
        stack.enter_context(clock.patched(sink.BatchSink, "_publish", "sink: publish to Kafka"))
        sink.BatchSink._predictions = score
        try:
            started = time.perf_counter()
            output = run_batch(batch, cfg.bars_topic, states, calendar, clock)
            the_sink(_Batch(output), 1)
            total = time.perf_counter() - started
        finally:
            sink.BatchSink._predictions = original_score
            producer.close()
    seconds = clock.seconds
    # nested stages: advance includes compute and encode
    seconds["state: advance (bookkeeping)"] -= seconds["state: features.compute"] + seconds["state: features.encode"]
    seconds["everything else (grouping, frames)"] = total - sum(seconds.values())
    seconds["total"] = total
    scale = BATCH / len(batch)
    return {stage: value * scale for stage, value in seconds.items()}


def _model(settings: Settings) -> LoadedModel:
    ref = registry.production_ref(settings)
    if ref is None:
        raise SystemExit("profile: no production model on the bench platform: run bench/run_all.py once")
    return LoadedModel(ref.version, registry.load(settings, ref))


def run(quick: bool) -> list[Figure]:
    """Seconds per 50,000 records of each stage, over 1 (quick) or 3 runs."""
    from dse_platform.config import get_settings

    settings = get_settings()
    model = _model(settings)
    rows = kafka_rows(settings, 2 * BATCH)
    data = f"{BATCH:,} replayed bars from {START} (state warmed by the {BATCH:,} before), model v{model.version}"
    figures: dict[str, Figure] = {}
    for _ in range(1 if quick else 3):
        for stage, seconds in profile(settings, model, rows).items():
            figures.setdefault(stage, Figure("profile", stage, "s per 50k records", data,
                                             ceiling=None if stage == "total" else "total")).add(seconds)
    return list(figures.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run instead of three")
    parser.add_argument("--py-spy", action="store_true", help="also record a py-spy flame graph of one run")
    args = parser.parse_args()
    with platform():
        for figure in run(args.quick):
            print(f"{figure.name:<40} {figure.summary()['median']:7.2f} s per 50k (load {figure.loads[-1]:.1f})")
        if args.py_spy:
            out = PROJECT_DIR / "var" / "bench" / "profile"
            out.mkdir(parents=True, exist_ok=True)
            svg = out / f"stream-batch-{time.strftime('%Y%m%dT%H%M%S')}.svg"
            subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "-o", str(svg), "--",
                            sys.executable, __file__, "--quick"], check=True)
            print(f"py-spy flame graph: {svg}")


if __name__ == "__main__":
    main()
