"""Driving supervisord without starting it: health waits, on-demand programs in the status table."""

from __future__ import annotations

import pytest

from dse_platform.errors import PlatformError
from dse_platform.runtime import airflow_env, supervisor
from dse_platform.runtime.services import Service


def _service(name: str, check, **kwargs) -> Service:
    return Service(name, f"http://{name}", [], lambda: ["true"], check, "DSE_X", **kwargs)


def _never(settings):
    raise AssertionError("an on-demand program that is not started must not be probed")


def test_poll_until():
    answers = iter([False, False, True])
    assert supervisor.poll_until(lambda: next(answers), 5, interval_s=0.01)
    assert not supervisor.poll_until(lambda: False, 0.1, interval_s=0.02)
    with pytest.raises(ZeroDivisionError):
        supervisor.poll_until(lambda: 1 / 0, 1)


def test_wait_healthy_fails_fast_with_the_log_of_a_crashed_program(make_settings, monkeypatch):
    settings = make_settings(health_timeout_s=60)
    settings.logs_dir.mkdir(parents=True)
    supervisor.log_path(settings, "kafka").write_text("starting\nBOOM: port in use\n")
    monkeypatch.setattr(supervisor, "process_states", lambda s: {"kafka": {"statename": "FATAL"}})
    with pytest.raises(PlatformError, match=r"(?s)kafka failed to start.*BOOM: port in use"):
        supervisor.wait_healthy(settings, [_service("kafka", lambda s: (False, "down"))], echo=lambda line: None)


def test_wait_healthy_times_out_naming_what_the_check_said(make_settings, monkeypatch):
    settings = make_settings(health_timeout_s=0.2)
    monkeypatch.setattr(supervisor, "process_states", lambda s: {"mlflow": {"statename": "RUNNING"}})
    with pytest.raises(PlatformError, match=r"mlflow not healthy after 0s .*mlflow: HTTP 503"):
        supervisor.wait_healthy(settings, [_service("mlflow", lambda s: (False, "HTTP 503"))], echo=lambda line: None)


def test_wait_healthy_runs_after_healthy_once(make_settings, monkeypatch):
    settings = make_settings()
    done, lines = [], []
    monkeypatch.setattr(supervisor, "process_states", lambda s: {"db": {"statename": "RUNNING"}})
    svc = _service("db", lambda s: (True, "SELECT 1 ok"), after_healthy=done.append)
    assert supervisor.wait_healthy(settings, [svc], echo=lines.append) == [svc]
    assert done == [settings] and lines == ["services: db healthy at http://db (SELECT 1 ok)"]


def test_status_shows_a_stream_not_started_as_off(make_settings, monkeypatch):
    settings = make_settings()
    monkeypatch.setattr(supervisor, "services", lambda s: [
        _service("kafka", lambda s: (True, "1 broker")), _service("stream", _never, autostart=False)])
    monkeypatch.setattr(supervisor, "process_states", lambda s: {"kafka": {"statename": "RUNNING"},
                                                                 "stream": {"statename": "STOPPED"}})
    rows = {row["service"]: row for row in supervisor.status(settings)}
    assert rows["kafka"]["health"] == "healthy"
    assert rows["stream"]["health"] == "off" and rows["stream"]["process"] == "STOPPED"


def test_start_program_needs_running_services(make_settings):
    with pytest.raises(PlatformError, match="dse up"):
        supervisor.start_program(make_settings(), "stream")
    with pytest.raises(PlatformError, match="no supervised program 'nope'"):
        supervisor.start_program(make_settings(), "nope")


def test_the_status_table_never_shows_the_database_password(make_settings, monkeypatch):
    settings = make_settings(db_url="postgresql+psycopg2://app:s3cret@db.example:5432/dse")
    monkeypatch.setattr(supervisor, "process_states", lambda s: {})
    monkeypatch.setattr(supervisor, "services", lambda s: [])
    monkeypatch.setattr(supervisor.health, "database_health", lambda s: (False, "refused"))
    rows = supervisor.status(settings)
    assert [r["url"] for r in rows] == ["postgresql+psycopg2://app:***@db.example:5432/dse"]


def test_airflows_generated_passwords_become_private(make_settings):
    settings = make_settings()
    path = airflow_env.password_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text('{"admin": "x"}')
    path.chmod(0o644)
    airflow_env.protect_passwords(settings)
    assert path.stat().st_mode & 0o777 == 0o600 and airflow_env.admin_password(settings) == "x"


def test_airflow_keeps_as_many_task_processes_as_the_setting_says(make_settings):
    """LocalExecutor starts `parallelism` processes at once: the default keeps 8, not Airflow's idle 32."""
    assert airflow_env.airflow_environment(make_settings())["AIRFLOW__CORE__PARALLELISM"] == "8"
    assert airflow_env.airflow_environment(make_settings(airflow_parallelism=3))["AIRFLOW__CORE__PARALLELISM"] == "3"
