"""The prerequisite installer's decision: install as root or with sudo -n, else name the one command."""

from __future__ import annotations

import subprocess

import pytest

from dse_platform.runtime import debian_packages as deb


def test_plan_installs_as_root_or_with_passwordless_sudo_else_tells() -> None:
    assert deb.plan([], is_root=False, passwordless_sudo=False).action == "none"
    root = deb.plan(["maven"], is_root=True, passwordless_sudo=False)
    assert (root.action, root.command) == ("install", ("apt-get", "install", "-y", "-q", "maven"))
    sudo = deb.plan(["maven", "postgresql"], is_root=False, passwordless_sudo=True)
    assert sudo.command[:2] == ("sudo", "-n") and sudo.update == ("sudo", "-n", "apt-get", "update", "-q")
    tell = deb.plan(["maven"], is_root=False, passwordless_sudo=False)
    assert tell.action == "tell" and "`sudo apt-get install -y -q maven`" in tell.message()


class Recorder:
    def __init__(self, codes: dict[str, int] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.codes = codes or {}

    def __call__(self, cmd: list[str], **_: object) -> subprocess.CompletedProcess:
        self.calls.append(cmd)
        return subprocess.CompletedProcess(cmd, self.codes.get(" ".join(cmd[-2:]), 0))


def test_present_packages_run_nothing(monkeypatch) -> None:
    monkeypatch.setitem(deb.NEEDS, "maven", deb.Need("maven", lambda: True))
    run = Recorder()
    assert deb.ensure(["maven"], run=run, echo=lambda _: None) == 0 and run.calls == []


@pytest.mark.parametrize("euid", [0, 1000])
def test_missing_package_is_installed_or_named(monkeypatch, euid) -> None:
    monkeypatch.setitem(deb.NEEDS, "maven", deb.Need("maven", lambda: False))
    monkeypatch.setattr(deb.os, "geteuid", lambda: euid)
    monkeypatch.setattr(deb.shutil, "which", lambda name: None)  # no sudo on this machine
    run, said = Recorder(), []
    code = deb.ensure(["maven"], run=run, echo=said.append)
    if euid == 0:
        assert code == 0 and run.calls == [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "maven"]]
    else:
        assert code == 2 and run.calls == [] and "sudo apt-get install -y -q maven" in said[0]


def test_a_failed_install_says_so(monkeypatch) -> None:
    monkeypatch.setitem(deb.NEEDS, "maven", deb.Need("maven", lambda: False))
    monkeypatch.setattr(deb.os, "geteuid", lambda: 0)
    said: list[str] = []
    assert deb.ensure(["maven"], run=Recorder({"-q maven": 100}), echo=said.append) == 2
    assert "failed (exit 100)" in said[-1]


def test_unknown_names_are_refused() -> None:
    said: list[str] = []
    assert deb.ensure(["java", "cobol"], echo=said.append) == 2 and "cobol" in said[0]


def test_runs_with_the_standard_library_only() -> None:
    """make runs it before the virtualenv exists: it must not import the package or third-party code."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(deb))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "glob", "importlib", "os", "shutil", "subprocess", "sys", "collections",
                        "dataclasses"}
