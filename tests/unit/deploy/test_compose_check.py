"""The compose deployment's static check (deploy/compose_check.py): the real file passes, planted defects do not."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dse_platform.config import PROJECT_DIR, Settings
from dse_platform.deploy.compose_check import Problem, check, documented_variables, interpolate, variables
from dse_platform.runtime.airflow_env import airflow_environment

#: copied, so a test can change them; everything else in the checkout is linked
COPIED = ("docker-compose.yml", ".env.example", "Dockerfile.airflow", "Dockerfile.spark", ".dockerignore")
NOT_LINKED = {".git", ".venv", "var", *COPIED}

Compose = dict[str, Any]


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the deployment files beside links to the rest of the checkout (the build context's sources)."""
    for name in COPIED:
        shutil.copy(PROJECT_DIR / name, tmp_path / name)
    for entry in PROJECT_DIR.iterdir():
        if entry.name not in NOT_LINKED:
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def planted(project: Path, change: Callable[[Compose], None]) -> list[Problem]:
    """The check's problems after ``change`` edits the project's compose file."""
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    change(compose)
    (project / "docker-compose.yml").write_text(yaml.safe_dump(compose, sort_keys=False))
    return check(project / "docker-compose.yml")


def builders(compose_file: Path, dockerfile: str) -> set[str]:
    services = yaml.safe_load(compose_file.read_text())["services"]
    return {name for name, service in services.items() if (service.get("build") or {}).get("dockerfile") == dockerfile}


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_the_real_compose_file_passes():
    assert [str(p) for p in check(PROJECT_DIR / "docker-compose.yml")] == []


def test_an_unchanged_copy_passes(project):
    assert planted(project, lambda compose: None) == []


def test_a_missing_build_context_is_reported(project):
    def change(compose: Compose) -> None:
        compose["services"]["stream"]["build"] = {"context": "./no-such-folder", "dockerfile": "Dockerfile.spark"}

    problem = only(planted(project, change))
    assert (problem.service, problem.field) == ("stream", "build.context")
    assert "no-such-folder" in problem.message and problem.fix


def test_a_missing_dockerfile_is_reported(project):
    def change(compose: Compose) -> None:
        compose["services"]["dashboard"]["build"] = {"context": ".", "dockerfile": "Dockerfile.dashboard"}

    problem = only(planted(project, change))
    assert (problem.service, problem.field) == ("dashboard", "build.dockerfile")
    assert "Dockerfile.dashboard" in problem.message


def test_a_missing_copy_source_is_reported_once_per_dockerfile(project):
    dockerfile = project / "Dockerfile.spark"
    dockerfile.write_text(dockerfile.read_text() + "COPY --chown=dse:dse no-such-file.txt \\\n    /opt/dse/\n")
    line = len(dockerfile.read_text().splitlines()) - 1
    problem = only(check(project / "docker-compose.yml"))
    assert problem.service in builders(project / "docker-compose.yml", "Dockerfile.spark")
    assert problem.field == f"build (Dockerfile.spark line {line})"
    assert "no-such-file.txt does not exist" in problem.message


def test_a_copy_source_left_out_by_dockerignore_is_reported(project):
    ignore = project / ".dockerignore"
    ignore.write_text(ignore.read_text() + "data/\n")
    problem = only(check(project / "docker-compose.yml"))
    assert problem.service in builders(project / "docker-compose.yml", "Dockerfile.airflow")
    assert "data/" in problem.message and ".dockerignore" in problem.message


def test_an_exception_in_dockerignore_keeps_a_copy_source(project):
    ignore = project / ".dockerignore"
    ignore.write_text(ignore.read_text() + "data/\n!data\n")
    assert check(project / "docker-compose.yml") == []


def test_a_glob_copy_matching_nothing_is_reported(project):
    dockerfile = project / "Dockerfile.airflow"
    dockerfile.write_text(dockerfile.read_text() + "COPY no-such-*.txt /opt/dse/\n")
    assert "no file in the build context matches" in only(check(project / "docker-compose.yml")).message


def test_a_missing_mounted_host_path_is_reported(project):
    def change(compose: Compose) -> None:
        compose["services"]["dashboard"]["volumes"].append("./no-such-folder:/opt/dse/extra:ro")

    problem = only(planted(project, change))
    assert (problem.service, problem.field) == ("dashboard", "volumes[1]")
    assert "./no-such-folder" in problem.message


def test_an_undocumented_variable_is_reported(project):
    def change(compose: Compose) -> None:
        compose["services"]["mlflow"]["environment"]["MLFLOW_EXTRA"] = "${UNDOCUMENTED_SETTING:-x}"

    problem = only(planted(project, change))
    assert (problem.service, problem.field) == ("mlflow", "environment.MLFLOW_EXTRA")
    assert "UNDOCUMENTED_SETTING" in problem.message and ".env.example" in problem.fix


def test_a_missing_env_example_is_reported(project):
    (project / ".env.example").unlink()
    assert only(check(project / "docker-compose.yml")).field == ".env.example"


def test_a_published_host_port_collision_is_reported(project):
    def change(compose: Compose) -> None:
        compose["services"]["dashboard"]["ports"].append("127.0.0.1:${AIRFLOW_HOST_PORT:-8080}:8502")

    problem = only(planted(project, change))
    assert (problem.service, problem.field) == ("dashboard", "ports")
    assert "8080/tcp" in problem.message and "airflow-apiserver" in problem.message


def test_a_long_running_service_without_healthcheck_is_reported(project):
    def change(compose: Compose) -> None:
        del compose["services"]["mlflow"]["healthcheck"]

    problem = only(planted(project, change))
    assert (problem.service, problem.field) == ("mlflow", "healthcheck")


def test_a_one_shot_job_needs_no_healthcheck_but_must_say_so(project):
    def change(compose: Compose) -> None:
        del compose["services"]["topics"]["restart"]

    assert only(planted(project, change)).service == "topics"


def test_compose_interpolation():
    text = "$$HOME|${A}|${B:-b}|${C-c}|${D:?set D}|$E"
    assert variables(text) == ["A", "B", "C", "D", "E"]
    # ":-" replaces an empty value, "-" only a missing one; D has no value and no default
    assert interpolate(text, {"A": "a", "B": "", "C": "", "E": "e"}) == "$HOME|a|b|||e"


def test_env_example_documents_set_and_commented_variables(tmp_path):
    path = tmp_path / ".env.example"
    path.write_text("# A secret.\nSECRET=\n# A port.\n# PORT=8080\nPORT_TOO=1\n#   not a variable: a=b\n")
    assert documented_variables(path) == {"SECRET": "", "PORT": None, "PORT_TOO": "1"}


def test_compose_airflow_runs_on_dhakas_clock_with_the_local_task_processes():
    """The containers' Airflow shares `dse up`'s timezone and LocalExecutor size (the DAGs have no start date)."""
    compose = yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())
    local = airflow_environment(Settings(_env_file=None))
    for name in ("AIRFLOW__CORE__DEFAULT_TIMEZONE", "AIRFLOW__CORE__PARALLELISM"):
        assert interpolate(str(compose["x-airflow-env"][name]), {}) == local[name]
