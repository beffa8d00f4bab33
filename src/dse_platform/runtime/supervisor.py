"""supervisord for the local services: its config, start, health wait, stop and status."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.runtime import health
from dse_platform.runtime.jars import ensure_jars
from dse_platform.runtime.services import Service, services


# ---- supervisor ------------------------------------------------------------------------------
def sup_dir(settings: Settings) -> Path:
    return settings.home / "supervisor"


def socket_path(settings: Settings) -> Path:
    return sup_dir(settings) / "supervisor.sock"


def log_path(settings: Settings, name: str) -> Path:
    return settings.logs_dir / f"{name}.log"


def _command_line(svc: Service) -> str:
    """A program's command for supervisor: the launcher when it needs an environment, else its own.

    Services running as another user (PostgreSQL as ``postgres``) may not be able to
    read our virtualenv, so they get their plain command line.
    """
    if svc.env:
        return f"{sys.executable} -m dse_platform.runtime.launch {svc.name}"
    return shlex.join(svc.command()).replace("%", "%%")


def write_config(settings: Settings, svcs: list[Service]) -> Path:
    """supervisord.conf for these services; each logs to ``var/logs/<name>.log``."""
    sdir = sup_dir(settings)
    sdir.mkdir(parents=True, exist_ok=True)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "[unix_http_server]", f"file={socket_path(settings)}", "chmod=0700", "",
        "[supervisord]", f"logfile={settings.logs_dir / 'supervisord.log'}",
        f"pidfile={sdir / 'supervisord.pid'}", f"directory={settings.project_dir}",
        "logfile_maxbytes=10MB", "logfile_backups=2", "", "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
        "[supervisorctl]", f"serverurl=unix://{socket_path(settings)}", "",
    ]
    for svc in svcs:
        lines += [
            f"[program:{svc.name}]",
            f"command={_command_line(svc)}",
            f"directory={settings.project_dir}",
            "autostart=true", "autorestart=unexpected", f"startsecs={svc.start_secs}", "startretries=2",
            "stopasgroup=true", "killasgroup=true", f"stopwaitsecs={svc.stop_wait_s}", f"stopsignal={svc.stop_signal}",
            f"stdout_logfile={log_path(settings, svc.name)}", "redirect_stderr=true",
            "stdout_logfile_maxbytes=20MB", "stdout_logfile_backups=2",
        ]
        if svc.user:
            lines.append(f"user={svc.user}")
        lines.append("")
    path = sdir / "supervisord.conf"
    path.write_text("\n".join(lines))
    return path


def rpc(settings: Settings) -> xmlrpc.client.ServerProxy:
    transport = SupervisorTransport(None, None, f"unix://{socket_path(settings)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisor_running(settings: Settings) -> bool:
    if not socket_path(settings).exists():
        return False
    try:
        return rpc(settings).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def check_ports_free(settings: Settings, svcs: list[Service]) -> None:
    """Refuse to start when another process already listens on a service's port."""
    for svc in svcs:
        for port in svc.ports:
            if port_in_use(settings.host, port):
                raise PlatformError(
                    f"port {port} needed by {svc.name} is already in use on {settings.host} by another process",
                    f"stop that process (e.g. `ss -ltnp 'sport = :{port}'` shows it) or set {svc.port_setting}")


def process_states(settings: Settings) -> dict[str, dict]:
    """Supervisor's view of each program (state name, pid, exit status), empty when it is down."""
    if not supervisor_running(settings):
        return {}
    return {info["name"]: info for info in rpc(settings).supervisor.getAllProcessInfo()}


def log_tail(settings: Settings, name: str, lines: int = 8) -> str:
    path = log_path(settings, name)
    if not path.exists():
        return "(no log yet)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def up(settings: Settings, echo: Callable[[str], None] = print) -> list[Service]:
    """Start every configured service and wait until each is really healthy."""
    svcs = services(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    if any(s.name == "kafka" for s in svcs):
        ensure_jars(settings, echo)
    if supervisor_running(settings):
        states = process_states(settings)
        not_running = [s for s in svcs if states.get(s.name, {}).get("statename") != "RUNNING"]
        if not not_running and set(states) == {s.name for s in svcs}:
            echo("services: already running; checking health")
            return wait_healthy(settings, svcs, echo)
        echo("services: supervisor is running with a different or stopped set; restarting it")
        down(settings, echo)
    check_ports_free(settings, svcs)
    for svc in svcs:
        if svc.prepare is not None:
            svc.prepare()
    conf = write_config(settings, svcs)
    proc = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
                          capture_output=True, text=True, cwd=settings.project_dir)
    if proc.returncode != 0:
        raise PlatformError(f"supervisord did not start: {proc.stderr.strip()[-300:]}",
                            f"see {settings.logs_dir / 'supervisord.log'}")
    echo(f"services: starting {', '.join(s.name for s in svcs)} (logs in {settings.logs_dir})")
    return wait_healthy(settings, svcs, echo)


def wait_healthy(settings: Settings, svcs: list[Service], echo: Callable[[str], None] = print) -> list[Service]:
    """Poll each service's real check until healthy; a crashed program fails fast with its log."""
    deadline = time.monotonic() + settings.health_timeout_s
    pending = list(svcs)
    last: dict[str, str] = {}
    while pending:
        states = process_states(settings)
        for svc in list(pending):
            state = states.get(svc.name, {}).get("statename", "UNKNOWN")
            if state in {"FATAL", "EXITED"}:
                raise PlatformError(
                    f"{svc.name} failed to start (supervisor state {state}); last log lines:\n"
                    f"{log_tail(settings, svc.name)}",
                    f"read {log_path(settings, svc.name)}, fix the cause, then `dse down` and `dse up`")
            ok, detail = svc.check(settings)
            last[svc.name] = detail
            if ok:
                if svc.after_healthy is not None:
                    svc.after_healthy(settings)
                echo(f"services: {svc.name} healthy at {svc.url} ({detail})")
                pending.remove(svc)
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            raise PlatformError(
                f"{names} not healthy after {settings.health_timeout_s:.0f}s "
                f"({'; '.join(f'{s.name}: {last.get(s.name)}' for s in pending)}); "
                f"last log lines of {pending[0].name}:\n"
                f"{log_tail(settings, pending[0].name)}",
                "check `dse logs <service>`; raise DSE_HEALTH_TIMEOUT_S on a slow machine")
        if pending:
            time.sleep(1.0)
    return svcs


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """True once process ``pid`` is gone, False if it is still there after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def down(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """Stop all programs and supervisord; wait until its pid is gone and the ports are free."""
    if not supervisor_running(settings):
        echo("services: not running")
        return
    server = rpc(settings)
    pid = server.supervisor.getPID()
    server.supervisor.stopAllProcesses(True)
    server.supervisor.shutdown()
    deadline = time.monotonic() + 120
    if not wait_for_exit(pid, 120):
        raise PlatformError(f"supervisord (pid {pid}) did not exit within 120 s", f"kill {pid} by hand")
    ports = [p for s in services(settings) for p in s.ports]
    while time.monotonic() < deadline and any(port_in_use(settings.host, p) for p in ports):
        time.sleep(0.2)
    busy = [p for p in ports if port_in_use(settings.host, p)]
    if busy:
        raise PlatformError(f"ports {busy} still have listeners after `dse down`",
                            "find them with `ss -ltnp` and stop them")
    echo("services: stopped (data under var/ kept)")


def status(settings: Settings) -> list[dict[str, str]]:
    """One row per service: process state, real health, URL and what the check said."""
    states = process_states(settings)
    rows = []
    for svc in services(settings):
        ok, detail = svc.check(settings)
        rows.append({"service": svc.name, "process": states.get(svc.name, {}).get("statename", "DOWN"),
                     "health": "healthy" if ok else "unhealthy", "url": svc.url, "detail": detail})
    if not settings.local_postgres:
        ok, detail = health.database_health(settings)
        rows.append({"service": "serving-db", "process": "-", "health": "healthy" if ok else "unhealthy",
                     "url": settings.serving_db_url, "detail": detail})
    return rows
