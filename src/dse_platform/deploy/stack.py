"""One compose project of the platform: build, start, wait for health, inspect, tear down.

Drives Debian's docker-compose 1.29 (the engine.py daemon) with an explicit project name and env file,
so a trial stack never touches a user's `.env` or their own project's containers and volumes. Health
comes from the engine itself (``docker inspect``): a long-running service is ready when its
healthcheck says "healthy", a one-shot job (``restart: "no"``) when it exited 0.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from dse_platform.errors import PlatformError


@dataclass(frozen=True)
class ContainerState:
    """What the engine says about one container of the project."""

    service: str
    name: str
    status: str  # created | running | restarting | exited | ...
    health: str | None  # starting | healthy | unhealthy, None without a healthcheck
    exit_code: int
    one_shot: bool

    @property
    def ready(self) -> bool:
        if self.one_shot:
            return self.status == "exited" and self.exit_code == 0
        return self.status == "running" and self.health == "healthy"

    @property
    def failed(self) -> bool:
        if self.one_shot:
            return self.status == "exited" and self.exit_code != 0
        return self.health == "unhealthy" or self.status in ("exited", "dead")

    def __str__(self) -> str:
        if self.one_shot:
            return f"{self.service}: {self.status} (exit {self.exit_code})"
        return f"{self.service}: {self.status}, {self.health or 'no healthcheck'}"


@dataclass(frozen=True)
class Stack:
    """The compose project ``project`` of ``compose_file``, with settings and secrets from ``env_file``."""

    compose_file: Path
    env_file: Path
    project: str

    def compose(self, *args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``docker-compose`` on this project; a failure names the command and its output's tail."""
        argv = ["docker-compose", "-f", str(self.compose_file), "--project-directory", str(self.compose_file.parent),
                "--env-file", str(self.env_file), "-p", self.project, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise PlatformError(f"`docker-compose {' '.join(args)}` failed (exit {done.returncode}): "
                                f"{(done.stdout + done.stderr).strip()[-3000:]}",
                                f"read the output above; `docker-compose -p {self.project} logs` has the services'")
        return done

    def _services(self) -> dict[str, dict]:
        return yaml.safe_load(self.compose_file.read_text(encoding="utf-8"))["services"]

    def one_shots(self) -> set[str]:
        """Services that run once and exit (``restart: "no"``), as the compose file declares them."""
        return {name for name, spec in self._services().items() if spec.get("restart") in ("no", False)}

    def image_builders(self) -> list[str]:
        """One service per image the file builds: Compose 1.29 would build a shared image once per service."""
        first: dict[str, str] = {}
        for name, spec in self._services().items():
            if "build" in spec:
                first.setdefault(spec.get("image", name), name)
        return sorted(first.values())

    def build(self) -> None:
        """Build every image of the file, each once."""
        self.compose("build", *self.image_builders())

    def up(self) -> None:
        """Start every service; one whose healthcheck fails on the way is named with its log's tail.

        docker-compose itself only names a container id ("is unhealthy") before giving up.
        """
        try:
            self.compose("up", "-d")
        except PlatformError as exc:
            failed = [s for s in self.states() if s.failed]
            if not failed:
                raise
            raise PlatformError("; ".join(f"{s}: {self.logs(s.service)}" for s in failed) + f" ({exc.problem})",
                                exc.fix) from exc

    def states(self) -> list[ContainerState]:
        """Every container of the project, as the engine sees it now."""
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"],
                             capture_output=True, text=True, check=True).stdout.split()
        if not ids:
            return []
        one_shots = self.one_shots()
        out = []
        for info in json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                              check=True).stdout):
            service = info["Config"]["Labels"].get("com.docker.compose.service", "?")
            state = info["State"]
            out.append(ContainerState(service, info["Name"].lstrip("/"), state["Status"],
                                      (state.get("Health") or {}).get("Status"), state["ExitCode"],
                                      service in one_shots))
        return sorted(out, key=lambda s: s.name)

    def wait_ready(self, timeout_s: float, poll_s: float = 5.0) -> list[ContainerState]:
        """Wait until every container is ready; stop at the first failure, naming it with its log's tail."""
        deadline = time.monotonic() + timeout_s
        states: list[ContainerState] = []
        while time.monotonic() < deadline:
            states = self.states()
            failed = [s for s in states if s.failed]
            if failed:
                raise PlatformError(f"{failed[0]}: {self.logs(failed[0].service)}",
                                    f"fix the service, then `docker-compose -p {self.project} up -d` again")
            if states and all(s.ready for s in states):
                return states
            time.sleep(poll_s)
        waiting = [str(s) for s in states if not s.ready]
        raise PlatformError(f"not ready after {timeout_s:.0f} s: {'; '.join(waiting)}",
                            f"`docker-compose -p {self.project} logs <service>` says why")

    def logs(self, service: str, lines: int = 40) -> str:
        """The last ``lines`` of a service's output, for error messages."""
        return self.compose("logs", "--no-color", "--tail", str(lines), service, check=False).stdout[-4000:]
