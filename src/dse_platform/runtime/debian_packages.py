"""The Debian packages the platform needs from the machine, installed when absent and allowed.

`make demo` and `make test` run this before the virtualenv exists, so it uses the
standard library only: ``python3.11 src/dse_platform/runtime/debian_packages.py java maven``.
As root (or with sudo that needs no password) it installs what is missing with apt-get;
otherwise it stops with one line naming the command to run.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    """One prerequisite: the Debian package that provides it, and how to tell it is there."""

    package: str
    present: Callable[[], bool]


NEEDS: dict[str, Need] = {
    # Debian's python3.11 creates virtualenvs only with python3-venv (ensurepip) installed
    "venv": Need("python3-venv", lambda: importlib.util.find_spec("ensurepip") is not None),
    "java": Need("openjdk-17-jre-headless",
                 lambda: bool(shutil.which("java") or os.environ.get("DSE_JAVA_HOME"))),
    "maven": Need("maven", lambda: bool(shutil.which("mvn") or os.environ.get("DSE_MAVEN"))),
    "postgresql": Need("postgresql", lambda: bool(glob.glob("/usr/lib/postgresql/*/bin/initdb"))),
    "chromium": Need("chromium", lambda: os.access("/usr/bin/chromium", os.X_OK)),
    # the compose deployment (make test-deploy): Docker Engine, Compose 1.29, and the base image's builder
    "docker": Need("docker.io", lambda: os.access("/usr/sbin/dockerd", os.X_OK)),
    "compose": Need("docker-compose", lambda: bool(shutil.which("docker-compose"))),
    "debootstrap": Need("debootstrap", lambda: os.access("/usr/sbin/debootstrap", os.X_OK)),
}


@dataclass(frozen=True)
class Plan:
    """What to do: nothing, run ``command``, or stop and tell the user ``command``."""

    action: str  # "none" | "install" | "tell"
    packages: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()  # () as root, ("sudo", "-n") or ("sudo",) otherwise

    @property
    def update(self) -> tuple[str, ...]:
        return (*self.prefix, "apt-get", "update", "-q")

    @property
    def command(self) -> tuple[str, ...]:
        return (*self.prefix, "apt-get", "install", "-y", "-q", *self.packages)

    def message(self) -> str:
        return (f"missing prerequisite(s) {', '.join(self.packages)}: run `{' '.join(self.command)}` "
                "as root, then the make command again")


def plan(packages: Sequence[str], is_root: bool, passwordless_sudo: bool) -> Plan:
    """Install when we may (root, or sudo without a prompt), else say the one command to run."""
    if not packages:
        return Plan("none")
    if is_root:
        return Plan("install", tuple(packages))
    if passwordless_sudo:
        return Plan("install", tuple(packages), ("sudo", "-n"))
    return Plan("tell", tuple(packages), ("sudo",))


def _passwordless_sudo(run: Callable[..., subprocess.CompletedProcess]) -> bool:
    if shutil.which("sudo") is None:
        return False
    return run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def ensure(names: Sequence[str], run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
           echo: Callable[[str], None] = print) -> int:
    """Install the missing ones of ``names``; the exit status for make (0 ready, 2 the user must act)."""
    unknown = [n for n in names if n not in NEEDS]
    if unknown:
        echo(f"unknown prerequisite(s) {', '.join(unknown)}: known are {', '.join(NEEDS)}")
        return 2
    missing = [NEEDS[n].package for n in names if not NEEDS[n].present()]
    what = plan(missing, os.geteuid() == 0, bool(missing) and _passwordless_sudo(run))
    if what.action == "none":
        return 0
    if what.action == "tell":
        echo(what.message())
        return 2
    echo(f"installing Debian's {', '.join(what.packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = run(list(what.update), env=env)
    done = run(list(what.command), env=env) if update.returncode == 0 else update
    if done.returncode != 0:
        echo(f"installing {', '.join(what.packages)} failed (exit {done.returncode}): {what.message()}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(ensure(sys.argv[1:]))
