"""Logins on the local MLflow server: MLflow's basic-auth app, configured from generated credentials.

`dse up` runs ``mlflow server --app-name basic-auth``. MLflow reads its auth settings from the
ini file MLFLOW_AUTH_CONFIG_PATH names (written here, without secrets) and the two secrets
from the environment: the admin's password (MLFLOW_AUTH_ADMIN_PASSWORD, used when the admin is
first created) and the key signing its forms (MLFLOW_FLASK_SERVER_SECRET_KEY, shared by every
worker). Both come from ``var/secrets/mlflow.json`` and are handed to the server only when the
process manager launches it, so they never appear in supervisor's config. ``/health`` stays
open, so health checks need no login.
"""

from __future__ import annotations

from pathlib import Path

from dse_platform import credentials
from dse_platform.config import Settings
from dse_platform.errors import PlatformError

APP_NAME = "basic-auth"


def config_path(settings: Settings) -> Path:
    return settings.home / "mlflow" / "basic_auth.ini"


def write_config(settings: Settings) -> Path:
    """The server's auth ini: users in their own SQLite file; every user may read, only owners and admins change."""
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{settings.home / 'mlflow' / 'basic_auth.db'}\n"
        f"admin_username = {credentials.MLFLOW_ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # checking a password costs a deliberately slow hash (scrypt), on every request: the stream polls
        # the registry every few seconds and training logs many metrics. Cached per worker; there is one,
        # and a password changed through MLflow's API drops its entry at once
        "auth_cache_ttl_seconds = 300\n")
    return path


def secret_environment(settings: Settings) -> dict[str, str]:
    """The server's secrets, read from the credentials file `dse up` generated."""
    path = credentials.mlflow_file(settings.home)
    stored = credentials.read(path) or {}
    if missing := [key for key in credentials.MLFLOW_KEYS if not stored.get(key)]:
        raise PlatformError(f"{path} lacks {', '.join(missing)}: the MLflow server cannot start with logins",
                            "start the platform with `dse up`, which generates them (or set DSE_MLFLOW_AUTH=false)")
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config_path(settings)),
            "MLFLOW_AUTH_ADMIN_PASSWORD": stored["password"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": stored["flask_secret_key"]}
