"""Container states of a compose project: what counts as ready and as failed."""

from __future__ import annotations

import pytest

from dse_platform.config import PROJECT_DIR
from dse_platform.deploy.stack import ContainerState, Stack
from dse_platform.errors import PlatformError


def state(status: str, health: str | None = None, exit_code: int = 0, one_shot: bool = False) -> ContainerState:
    return ContainerState("svc", "p_svc_1", status, health, exit_code, one_shot)


def test_a_long_running_service_is_ready_only_when_healthy():
    assert state("running", "healthy").ready
    assert not state("running", "starting").ready and not state("running", "starting").failed
    assert not state("running", None).ready  # no healthcheck: nothing to wait on, never ready
    assert state("running", "unhealthy").failed and state("exited", None, 1).failed


def test_a_one_shot_job_is_ready_when_it_exited_zero():
    assert state("exited", exit_code=0, one_shot=True).ready
    assert state("exited", exit_code=3, one_shot=True).failed
    assert not state("running", one_shot=True).ready and not state("running", one_shot=True).failed


def test_one_shot_jobs_come_from_the_compose_file():
    stack = Stack(PROJECT_DIR / "docker-compose.yml", PROJECT_DIR / ".env.example", "p")
    assert {"db-init", "topics", "ingest", "first-model", "airflow-init"} <= stack.one_shots()
    assert "postgres" not in stack.one_shots() and "stream" not in stack.one_shots()


def test_each_image_is_built_by_one_service():
    stack = Stack(PROJECT_DIR / "docker-compose.yml", PROJECT_DIR / ".env.example", "p")
    assert stack.image_builders() == ["kafka", "postgres"]


def test_a_failed_up_names_the_unhealthy_service_with_its_log(monkeypatch):
    """docker-compose only names the container's id ("is unhealthy"): the error names the service and its log."""
    stack = Stack(PROJECT_DIR / "docker-compose.yml", PROJECT_DIR / ".env.example", "p")

    def compose(*args, **kwargs):
        raise PlatformError('`docker-compose up -d` failed (exit 1): Container "kafka-container" is unhealthy.', "fix")

    monkeypatch.setattr(Stack, "compose", lambda self, *a, **k: compose(*a, **k))
    monkeypatch.setattr(Stack, "states", lambda self: [ContainerState("kafka", "p_kafka_1", "restarting", "unhealthy",
                                                                      1, False), state("running", "healthy")])
    monkeypatch.setattr(Stack, "logs", lambda self, service: f"{service}: TypeError: node_dir() missing 1 argument")
    with pytest.raises(PlatformError, match=r"kafka: restarting, unhealthy: kafka: TypeError: node_dir\(\)") as caught:
        stack.up()
    assert "kafka-container" in caught.value.problem and caught.value.fix == "fix"
