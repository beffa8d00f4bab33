"""The background health probe: a slow service never holds a page for longer than the wait."""

from __future__ import annotations

import threading

from dse_platform.dashboard.status import StatusProbe


def test_a_slow_first_probe_is_waited_for_briefly_then_shown_once_in() -> None:
    release = threading.Event()
    calls = []

    def probe() -> list[dict[str, str]]:
        calls.append(1)
        release.wait(5)
        return [{"service": "kafka", "health": "unhealthy"}]

    status = StatusProbe(probe, max_age_s=60)
    assert status.latest(wait_s=0.05) is None
    release.set()
    rows, age = status.latest(wait_s=5)
    assert rows == [{"service": "kafka", "health": "unhealthy"}] and age >= 0
    assert status.latest(wait_s=0)[0] == rows
    assert len(calls) == 1  # fresh enough: not asked again


def test_a_stale_answer_is_shown_while_a_new_probe_runs() -> None:
    answers = iter([["first"], ["second"]])
    gate = threading.Event()

    def probe() -> list:
        answer = next(answers)
        if answer == ["second"]:
            gate.wait(5)
        return answer

    status = StatusProbe(probe, max_age_s=0)
    assert status.latest(wait_s=5)[0] == ["first"]
    assert status.latest(wait_s=0)[0] == ["first"]  # stale: a new probe started, the old answer shown meanwhile
    gate.set()
    status._running.result(timeout=5)
    assert status.latest(wait_s=0)[0] == ["second"]


def test_start_asks_once_without_waiting_and_the_first_visit_finds_the_answer() -> None:
    done = threading.Event()
    calls = []

    def probe() -> list:
        calls.append(1)
        done.set()
        return ["answer"]

    status = StatusProbe(probe, max_age_s=60)
    status.start()
    status.start()  # already asking: no second probe
    assert done.wait(5)
    status._running.result(timeout=5)
    assert status.latest(wait_s=0)[0] == ["answer"] and len(calls) == 1
