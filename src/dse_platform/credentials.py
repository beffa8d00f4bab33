"""Generated credentials of the local services: made once, kept under ``var/secrets`` (mode 0600), reused.

The local MLflow server, PostgreSQL cluster and (with SASL on) Kafka brokers need logins, and
nobody should have to invent them before a first `dse up`. Each service gets one JSON file of generated
values (Python's ``secrets``); a value already in the file is never replaced, so a
restart finds the logins the services were created with. `dse up` shows new ones once.
Kept apart from ``config.py`` (which reads them) so the settings stay plain data.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from dse_platform.errors import PlatformError

if TYPE_CHECKING:
    from dse_platform.config import Settings

#: user the local MLflow server's admin is created as, and the platform's clients log in as
MLFLOW_ADMIN = "admin"
#: SCRAM user the local Kafka brokers are formatted with (when SASL is on), for brokers and clients alike
KAFKA_USER = "dse"
#: bootstrap superuser of the local PostgreSQL cluster (initdb -U)
POSTGRES_SUPERUSER = "postgres"
#: the application role: owns the serving database, is no superuser
POSTGRES_APP_ROLE = "dse"

MLFLOW_KEYS = ("password", "flask_secret_key")
POSTGRES_KEYS = ("superuser_password", "app_password", "reader_password")
KAFKA_KEYS = ("password",)


def secrets_dir(home: Path) -> Path:
    return home / "secrets"


def mlflow_file(home: Path) -> Path:
    return secrets_dir(home) / "mlflow.json"


def postgres_file(home: Path) -> Path:
    return secrets_dir(home) / "postgres.json"


def kafka_file(home: Path) -> Path:
    return secrets_dir(home) / "kafka.json"


def generate() -> str:
    """A fresh secret: 32 random bytes, URL-safe (no quotes or ``@:/`` to escape in URLs or ini files)."""
    return secrets.token_urlsafe(32)


def read(path: Path) -> dict[str, str] | None:
    """The credentials stored at ``path``; None when they were not generated yet."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PlatformError(f"the credentials file {path} cannot be read: {exc}",
                            "restore it from a backup, or with every service stopped (`dse down`) delete it and "
                            "the state created with it, then `dse up`") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise PlatformError(f"the credentials file {path} is not a JSON object of strings",
                            "restore it from a backup, or delete it with the state created with it")
    return data


def ensure(path: Path, keys: Iterable[str], make: Callable[[], str] = generate) -> tuple[dict[str, str], bool]:
    """The credentials at ``path`` with every key present: (values, whether any was generated now).

    Missing keys are generated and the file is (re)written atomically with mode 0600; an existing
    file that others can read is narrowed to 0600.
    """
    values = read(path) or {}
    missing = [key for key in keys if not values.get(key)]
    if not missing:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return values, False
    values |= {key: make() for key in missing}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(values, out, indent=2)
    tmp.replace(path)
    return values, True


def ensure_local(settings: Settings) -> list[str]:
    """Generate the logins of the local services this configuration runs; a line for each set made now.

    `dse up` (and so the demo) shows the lines: a new MLflow password is shown this once, the
    PostgreSQL ones (which no person needs to type) only by where they are.
    """
    lines = []
    if settings.local_mlflow and settings.mlflow_auth:
        path = mlflow_file(settings.home)
        values, new = ensure(path, MLFLOW_KEYS)
        if new:
            lines.append(f"credentials: MLflow login {MLFLOW_ADMIN} / {values['password']} generated (shown only "
                         f"now; kept in {path}, mode 0600)")
    if settings.local_postgres:
        path = postgres_file(settings.home)
        if not path.exists():
            # a cluster made without this file has logins nobody knows: refuse it before generating new ones
            from dse_platform.runtime import pgserver

            pgserver.check_not_passwordless(settings)
        if ensure(path, POSTGRES_KEYS)[1]:
            lines.append(f"credentials: PostgreSQL passwords of {POSTGRES_SUPERUSER} (superuser), {POSTGRES_APP_ROLE} "
                         f"(owns the serving database) and {settings.dashboard_db_user} (dashboard, read-only) "
                         f"generated into {path} (mode 0600)")
    if settings.local_kafka and settings.kafka_sasl_enabled and settings.kafka_password is None:
        path = kafka_file(settings.home)
        if ensure(path, KAFKA_KEYS)[1]:
            lines.append(f"credentials: Kafka SCRAM login {KAFKA_USER} of the local brokers generated into {path} "
                         "(mode 0600)")
    return lines
