"""supervisord's config file: one ``[program:x]`` section per service, written by ``dse up``.

Kept apart from driving supervisord (``supervisor.py``) so the file's content can
be read and tested on its own. The stream's section is rewritten by
``supervisor.start_program`` with per-start environment overrides.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.runtime.services import Service

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
Sections = dict[str, list[str]]


def sup_dir(settings: Settings) -> Path:
    return settings.home / "supervisor"


def socket_path(settings: Settings) -> Path:
    return sup_dir(settings) / "supervisor.sock"


def config_path(settings: Settings) -> Path:
    return sup_dir(settings) / "supervisord.conf"


def log_path(settings: Settings, name: str) -> Path:
    return settings.logs_dir / f"{name}.log"


def _command_line(svc: Service) -> str:
    """A program's command for supervisor: the launcher when it needs an environment, else its own.

    Services running as another user (PostgreSQL as ``postgres``) may not be able to
    read our virtualenv, so they get their plain command line.
    """
    if svc.env or svc.secret_env:
        return f"{sys.executable} -m dse_platform.runtime.launch {svc.name}"
    return shlex.join(svc.command()).replace("%", "%%")


def _environment_line(environment: Mapping[str, str]) -> str:
    """supervisor's ``environment=KEY="value",...`` (``%`` doubled, as supervisor expands ``%(name)s``).

    supervisor's parser keeps no escapes, so a quote or newline in a value cannot be written.
    """
    for key, value in environment.items():
        if not _ENV_NAME.fullmatch(key) or any(c in value for c in "\"'\n"):
            raise PlatformError(f"the override {key}={value!r} cannot go into supervisor's environment= line",
                                "use a plain variable name and a value without quotes or newlines")
    return "environment=" + ",".join(f'{key}="{value}"'.replace("%", "%%") for key, value in environment.items())


def program_lines(settings: Settings, svc: Service, environment: Mapping[str, str]) -> list[str]:
    """One ``[program:x]`` section: how supervisor runs, restarts, stops and logs the service."""
    lines = [
        f"command={_command_line(svc)}", f"directory={settings.project_dir}",
        f"autostart={str(svc.autostart).lower()}", f"autorestart={svc.autorestart}",
        f"startsecs={svc.start_secs}", f"startretries={svc.start_retries}",
        "stopasgroup=true", "killasgroup=true", f"stopwaitsecs={svc.stop_wait_s}", f"stopsignal={svc.stop_signal}",
        f"stdout_logfile={log_path(settings, svc.name)}", "redirect_stderr=true",
        "stdout_logfile_maxbytes=20MB", "stdout_logfile_backups=2",
    ]
    if svc.user:
        lines.append(f"user={svc.user}")
    if environment:
        lines.append(_environment_line(environment))
    return lines


def _render(sections: Sections) -> str:
    return "".join(f"[{name}]\n" + "".join(f"{line}\n" for line in lines) + "\n" for name, lines in sections.items())


def _parse(text: str) -> Sections:
    """The sections of a config this module wrote (``[name]`` lines, then one ``key=value`` a line)."""
    sections: Sections = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip()[1:-1], [])
        elif line.strip():
            current.append(line)
    return sections


def write_config(settings: Settings, svcs: list[Service]) -> Path:
    """supervisord.conf for these services; each logs to ``var/logs/<name>.log``."""
    sdir = sup_dir(settings)
    sdir.mkdir(parents=True, exist_ok=True)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    sections: Sections = {
        "unix_http_server": [f"file={socket_path(settings)}", "chmod=0700"],
        "supervisord": [f"logfile={settings.logs_dir / 'supervisord.log'}", f"pidfile={sdir / 'supervisord.pid'}",
                        f"directory={settings.project_dir}", "logfile_maxbytes=10MB", "logfile_backups=2"],
        "rpcinterface:supervisor": ["supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface"],
        "supervisorctl": [f"serverurl=unix://{socket_path(settings)}"],
    }
    for svc in svcs:
        sections[f"program:{svc.name}"] = program_lines(settings, svc, {})
    path = config_path(settings)
    path.write_text(_render(sections))
    return path


def write_program(settings: Settings, svc: Service, environment: Mapping[str, str]) -> None:
    """Rewrite one program's section of the existing config (the others stay as ``dse up`` wrote them)."""
    path = config_path(settings)
    sections = _parse(path.read_text())
    sections[f"program:{svc.name}"] = program_lines(settings, svc, environment)
    path.write_text(_render(sections))
