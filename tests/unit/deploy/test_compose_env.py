"""The compose `.env` generator: secrets generated, everything else kept, mode 0600, never overwritten."""

from __future__ import annotations

import base64
import stat

import pytest

from dse_platform.config import PROJECT_DIR
from dse_platform.deploy import compose_env
from dse_platform.errors import PlatformError

EXAMPLE = """# comment kept
COMPOSE_PROJECT_NAME=dse-platform
POSTGRES_PASSWORD=
AIRFLOW_FERNET_KEY=
# AIRFLOW_HOST_PORT=8080
"""


def test_empty_settings_get_fresh_secrets_and_the_rest_is_kept():
    first, second = compose_env.render(EXAMPLE), compose_env.render(EXAMPLE)
    assert first.startswith("# comment kept\nCOMPOSE_PROJECT_NAME=dse-platform\n")
    assert "# AIRFLOW_HOST_PORT=8080" in first
    values = dict(line.split("=", 1) for line in first.splitlines() if line[:1].isalpha())
    assert len(values["POSTGRES_PASSWORD"]) >= 40
    assert values["POSTGRES_PASSWORD"].replace("-", "").replace("_", "").isalnum()  # safe in a database URL
    assert len(base64.urlsafe_b64decode(values["AIRFLOW_FERNET_KEY"])) == 32
    assert first != second  # fresh each time


def test_overrides_replace_set_and_commented_lines_and_new_ones_are_appended():
    text = compose_env.render(EXAMPLE, {"AIRFLOW_HOST_PORT": "18080", "COMPOSE_PROJECT_NAME": "x", "EXTRA": "1"})
    lines = text.splitlines()
    assert "AIRFLOW_HOST_PORT=18080" in lines and "COMPOSE_PROJECT_NAME=x" in lines and lines[-1] == "EXTRA=1"
    assert "# AIRFLOW_HOST_PORT=8080" not in lines


def test_written_file_is_private_readable_and_never_overwritten(tmp_path):
    target = compose_env.write(tmp_path / ".env", PROJECT_DIR / ".env.example")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    values = compose_env.read(target)
    assert values["COMPOSE_PROJECT_NAME"] == "dse-platform"
    assert all(values[name] for name in ("POSTGRES_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_JWT_SECRET"))
    with pytest.raises(PlatformError, match="exists"):
        compose_env.write(target, PROJECT_DIR / ".env.example")
    assert compose_env.read(target) == values
    assert compose_env.read(compose_env.write(target, PROJECT_DIR / ".env.example", force=True)) != values
