"""supervisord.conf as supervisor itself reads it: one program per service, the stream on demand."""

from __future__ import annotations

import pwd
import shlex
import sys
from pathlib import Path

import pytest
from supervisor.datatypes import RestartUnconditionally, RestartWhenExitUnexpected
from supervisor.options import ServerOptions

from dse_platform.errors import PlatformError
from dse_platform.runtime import broker, pgserver, supervisor_config
from dse_platform.runtime.services import services

PG_COMMAND = ["/usr/lib/postgresql/15/bin/postgres", "-D", "/data dir/pg", "-c", "work_mem=50%"]


def _programs(path: Path) -> dict:
    options = ServerOptions()
    options.realize(args=["-c", str(path)])
    return {proc.name: proc for group in options.process_group_configs for proc in group.process_configs}


@pytest.fixture
def platform(make_settings, monkeypatch):
    """Every service configured (PostgreSQL run as another user), without needing Java or PostgreSQL here."""
    monkeypatch.setattr(broker, "command",
                        lambda settings, node=1: ["/opt/jdk/bin/java", "kafka.Kafka", "server.properties"])
    monkeypatch.setattr(pgserver, "command", lambda settings: PG_COMMAND)
    monkeypatch.setattr(pgserver, "run_user", lambda: "nobody")
    settings = make_settings(db_backend="postgres")
    return settings, services(settings)


def test_one_program_per_service(platform):
    settings, svcs = platform
    programs = _programs(supervisor_config.write_config(settings, svcs))
    assert set(programs) == {"kafka", "mlflow", "postgres", "airflow", "dashboard", "stream"}
    assert {name for name, proc in programs.items() if not proc.autostart} == {"stream"}
    for name, proc in programs.items():
        assert proc.stdout_logfile == str(settings.logs_dir / f"{name}.log")
        assert proc.stopasgroup and proc.killasgroup


def test_commands_and_users(platform):
    settings, svcs = platform
    programs = _programs(supervisor_config.write_config(settings, svcs))
    assert programs["kafka"].command == "/opt/jdk/bin/java kafka.Kafka server.properties"
    # plain command line for the other user ('%' survives supervisor's expansion)
    assert programs["postgres"].command == shlex.join(PG_COMMAND)
    assert programs["postgres"].uid == pwd.getpwnam("nobody").pw_uid
    assert programs["kafka"].uid is None
    for name in ("mlflow", "airflow", "stream"):  # programs with an environment go through the launcher
        assert programs[name].command == f"{sys.executable} -m dse_platform.runtime.launch {name}"


def test_the_stream_restarts_after_crashes_with_backoff(platform):
    settings, svcs = platform
    programs = _programs(supervisor_config.write_config(settings, svcs))
    stream, kafka = programs["stream"], programs["kafka"]
    assert stream.autorestart is RestartUnconditionally and kafka.autorestart is RestartWhenExitUnexpected
    assert stream.startsecs == 30 and stream.startretries == 10


def test_write_program_sets_one_programs_environment(platform):
    settings, svcs = platform
    path = supervisor_config.write_config(settings, svcs)
    before = path.read_text()
    stream = next(s for s in svcs if s.name == "stream")
    supervisor_config.write_program(settings, stream, {"DSE_STREAM_MAX_OFFSETS": "5000", "NOTE": "a,b 10%"})
    assert _programs(path)["stream"].environment == {"DSE_STREAM_MAX_OFFSETS": "5000", "NOTE": "a,b 10%"}
    assert not _programs(path)["kafka"].environment
    env_line = next(line for line in path.read_text().splitlines() if line.startswith("environment="))
    assert path.read_text().replace(env_line + "\n", "") == before  # every other line as `dse up` wrote it
    supervisor_config.write_program(settings, stream, {})
    assert path.read_text() == before


@pytest.mark.parametrize("environment", [{"X": 'say "hi"'}, {"1X": "1"}, {"X": "two\nlines"}])
def test_unwritable_overrides_are_refused(platform, environment):
    settings, svcs = platform
    supervisor_config.write_config(settings, svcs)
    with pytest.raises(PlatformError, match="environment= line"):
        supervisor_config.write_program(settings, svcs[-1], environment)
