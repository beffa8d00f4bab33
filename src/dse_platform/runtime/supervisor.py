"""Driving supervisord for the local services: start, health wait, stop, status, and on-demand programs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import xmlrpc.client
from collections.abc import Callable, Mapping

from sqlalchemy.engine import make_url
from supervisor.xmlrpc import SupervisorTransport
from tenacity import Retrying, retry_if_not_result, stop_after_delay, wait_fixed

from dse_platform import credentials
from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.runtime import health
from dse_platform.runtime.jars import ensure_jars
from dse_platform.runtime.services import Service, services
from dse_platform.runtime.supervisor_config import log_path, socket_path, write_config, write_program

#: supervisor states of a program that is up or on its way up (BACKOFF: waiting to retry a failed start)
RUNNING_STATES = frozenset({"STARTING", "RUNNING", "BACKOFF"})


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


def poll_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """True once ``check()`` returns true, False if it has not after ``timeout_s``; its exceptions propagate."""
    retrying = Retrying(retry=retry_if_not_result(bool), stop=stop_after_delay(timeout_s), wait=wait_fixed(interval_s),
                        retry_error_callback=lambda _state: False)
    return retrying(check)


def up(settings: Settings, echo: Callable[[str], None] = print) -> list[Service]:
    """Start every service `dse up` owns (all but on-demand ones like the stream) and wait until each is healthy."""
    svcs = services(settings)
    started = [s for s in svcs if s.autostart]
    settings.home.mkdir(parents=True, exist_ok=True)
    if settings.local_kafka:
        ensure_jars(settings, echo)
    if supervisor_running(settings):
        states = process_states(settings)
        not_running = [s for s in started if states.get(s.name, {}).get("statename") != "RUNNING"]
        if not not_running and set(states) == {s.name for s in svcs}:
            echo("services: already running; checking health")
            return wait_healthy(settings, started, echo)
        echo("services: supervisor is running with a different or stopped set; restarting it")
        down(settings, echo)
    check_ports_free(settings, started)
    for line in credentials.ensure_local(settings):
        echo(line)
    for svc in started:
        if svc.prepare is not None:
            svc.prepare()
    conf = write_config(settings, svcs)
    proc = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
                          capture_output=True, text=True, cwd=settings.project_dir)
    if proc.returncode != 0:
        raise PlatformError(f"supervisord did not start: {proc.stderr.strip()[-300:]}",
                            f"see {settings.logs_dir / 'supervisord.log'}")
    echo(f"services: starting {', '.join(s.name for s in started)} (logs in {settings.logs_dir})")
    return wait_healthy(settings, started, echo)


def wait_healthy(settings: Settings, svcs: list[Service], echo: Callable[[str], None] = print) -> list[Service]:
    """Poll each service's real check until healthy; a crashed program fails fast with its log."""
    pending = list(svcs)
    last: dict[str, str] = {}

    def all_healthy() -> bool:
        states = process_states(settings)
        for svc in list(pending):
            state = states.get(svc.name, {}).get("statename", "UNKNOWN")
            if state in {"FATAL", "EXITED"}:
                raise PlatformError(
                    f"{svc.name} failed to start (supervisor state {state}); last log lines:\n"
                    f"{log_tail(settings, svc.name)}",
                    f"read {log_path(settings, svc.name)}, fix the cause, then `dse down` and `dse up`")
            ok, last[svc.name] = svc.check(settings)
            if ok:
                if svc.after_healthy is not None:
                    svc.after_healthy(settings)
                echo(f"services: {svc.name} healthy at {svc.url} ({last[svc.name]})")
                pending.remove(svc)
        return not pending

    if not poll_until(all_healthy, settings.health_timeout_s, interval_s=1.0):
        names = ", ".join(s.name for s in pending)
        raise PlatformError(
            f"{names} not healthy after {settings.health_timeout_s:.0f}s "
            f"({'; '.join(f'{s.name}: {last.get(s.name)}' for s in pending)}); "
            f"last log lines of {pending[0].name}:\n"
            f"{log_tail(settings, pending[0].name)}",
            "check `dse logs <service>`; raise DSE_HEALTH_TIMEOUT_S on a slow machine")
    return svcs


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """True once process ``pid`` is gone, False if it is still there after ``timeout_s``."""
    return poll_until(lambda: _gone(pid), timeout_s)


def down(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """Stop all programs (the stream too) and supervisord; wait until its pid is gone and the ports are free."""
    if not supervisor_running(settings):
        echo("services: not running")
        return
    server = rpc(settings)
    pid = server.supervisor.getPID()
    server.supervisor.stopAllProcesses(True)
    server.supervisor.shutdown()
    if not wait_for_exit(pid, 120):
        raise PlatformError(f"supervisord (pid {pid}) did not exit within 120 s", f"kill {pid} by hand")
    ports = [p for s in services(settings) for p in s.ports]
    if not poll_until(lambda: not any(port_in_use(settings.host, p) for p in ports), 60):
        busy = [p for p in ports if port_in_use(settings.host, p)]
        raise PlatformError(f"ports {busy} still have listeners after `dse down`",
                            "find them with `ss -ltnp` and stop them")
    echo("services: stopped (data under var/ kept)")


def _service(settings: Settings, name: str) -> Service:
    found = {s.name: s for s in services(settings)}
    if name not in found:
        raise PlatformError(f"there is no supervised program '{name}'", f"use one of {', '.join(found)}")
    return found[name]


def start_program(settings: Settings, name: str, environment: Mapping[str, str] | None = None) -> dict:
    """Start an on-demand program (the stream) under the running supervisord; returns its process info.

    ``environment`` goes into the program's section, so it holds for this start and every
    automatic restart after a crash. supervisor re-reads the config and swaps the program
    when its section changed (a running one is restarted with the new environment); one
    already running with the same section is left alone.
    """
    svc = _service(settings, name)
    if not supervisor_running(settings):
        raise PlatformError(f"cannot start {name}: the services are not running", "start them with `dse up`")
    if svc.prepare is not None:
        svc.prepare()
    write_program(settings, svc, environment or {})
    server = rpc(settings).supervisor
    try:
        added, changed, _removed = server.reloadConfig()[0]
        if name in changed:
            if server.getProcessInfo(name)["statename"] in RUNNING_STATES:
                server.stopProcess(name, True)
            server.removeProcessGroup(name)
        if name in added or name in changed:
            server.addProcessGroup(name)
        if server.getProcessInfo(name)["statename"] not in RUNNING_STATES:
            server.startProcess(name, False)
        return server.getProcessInfo(name)
    except xmlrpc.client.Fault as exc:
        raise PlatformError(f"supervisor could not start {name}: {exc.faultString}; last log lines:\n"
                            f"{log_tail(settings, name)}",
                            f"read {log_path(settings, name)}; `dse down` then `dse up` rewrites supervisor's config"
                            ) from exc


def status(settings: Settings) -> list[dict[str, str]]:
    """One row per service: process state, real health, URL and what the check said.

    An on-demand program that is not started is ``off``, not unhealthy.
    """
    states = process_states(settings)
    rows = []
    for svc in services(settings):
        state = states.get(svc.name, {}).get("statename", "DOWN")
        if not svc.autostart and state in {"STOPPED", "DOWN"}:
            rows.append({"service": svc.name, "process": state, "health": "off", "url": svc.url,
                         "detail": f"not started (`dse {svc.name} --background` starts it)"})
            continue
        ok, detail = svc.check(settings)
        rows.append({"service": svc.name, "process": state, "health": "healthy" if ok else "unhealthy",
                     "url": svc.url, "detail": detail})
    if not settings.local_postgres:
        ok, detail = health.database_health(settings)
        rows.append({"service": "serving-db", "process": "-", "health": "healthy" if ok else "unhealthy",
                     "url": make_url(settings.serving_db_url).render_as_string(hide_password=True),
                     "detail": detail})
    return rows
