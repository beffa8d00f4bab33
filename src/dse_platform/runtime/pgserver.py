"""The local PostgreSQL server used as serving database when none is configured.

Binaries come from Debian's ``postgresql`` package. PostgreSQL refuses to run
as root, so when we are root the cluster is created and run as the ``postgres``
system user that the package creates.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import Connection, create_engine, text

from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.runtime.health import sql_health

INSTALL_FIX = "install the server (Debian: apt-get install postgresql) or set DSE_POSTGRES_BIN / DSE_DB_URL"


def bin_dir(settings: Settings) -> Path:
    """Folder holding ``initdb`` and ``postgres``: configured, else the newest Debian install."""
    if settings.postgres_bin is not None:
        candidates = [settings.postgres_bin]
    else:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for cand in candidates:
        if (cand / "initdb").exists() and (cand / "postgres").exists():
            return cand
    raise PlatformError("the PostgreSQL server (initdb, postgres) was not found", INSTALL_FIX)


def run_user() -> str | None:
    """System user the server runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PlatformError("running as root but there is no 'postgres' system user", INSTALL_FIX) from exc
    return "postgres"


def pg_dir(settings: Settings) -> Path:
    return settings.home / "postgres"


def data_dir(settings: Settings) -> Path:
    return pg_dir(settings) / "data"


def socket_dir(settings: Settings) -> Path:
    return pg_dir(settings) / "run"


def _own(paths: list[Path], user: str | None) -> None:
    """Hand the folders we create to the server's user (initdb then owns what it creates inside)."""
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)


def init_cluster(settings: Settings) -> bool:
    """Create the database cluster on first start (superuser ``dse``, trust on loopback only)."""
    binaries, user = bin_dir(settings), run_user()
    data = data_dir(settings)
    socket_dir(settings).mkdir(parents=True, exist_ok=True)
    _own([pg_dir(settings), socket_dir(settings)], user)
    if user is not None and subprocess.run(["test", "-w", str(pg_dir(settings))], user=user).returncode != 0:
        raise PlatformError(
            f"PostgreSQL runs as '{user}', which cannot reach {pg_dir(settings)} (a parent folder is not searchable)",
            "put DSE_HOME under a folder others can traverse (chmod o+x on its parents) or set DSE_DB_URL")
    if (data / "PG_VERSION").exists():
        return False
    if data.exists():
        shutil.rmtree(data)
    proc = subprocess.run(
        [str(binaries / "initdb"), "-D", str(data), "-U", "dse", "--auth=trust", "-E", "UTF8",
         "--no-locale", "--no-instructions"],
        capture_output=True, text=True, user=user, timeout=300,
    )
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise PlatformError(f"initdb failed for {data}: {tail}", INSTALL_FIX)
    return True


def command(settings: Settings) -> list[str]:
    return [str(bin_dir(settings) / "postgres"), "-D", str(data_dir(settings)),
            "-p", str(settings.postgres_port), "-k", str(socket_dir(settings)),
            "-c", f"listen_addresses={settings.host}", "-c", "fsync=on"]


def admin_url(settings: Settings) -> str:
    return f"postgresql+psycopg2://dse@{settings.host}:{settings.postgres_port}/postgres"


def health(settings: Settings) -> tuple[bool, str]:
    """The cluster answers on its maintenance database (the ``dse`` one may not exist yet)."""
    return sql_health(admin_url(settings))


def ensure_database(settings: Settings) -> None:
    """Create the ``dse`` database inside a freshly started cluster, and the dashboard's read-only role on it."""
    engine = create_engine(admin_url(settings), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = 'dse'")).scalar()
            if not exists:
                conn.execute(text("CREATE DATABASE dse"))
            ensure_reader_role(conn, settings.dashboard_db_user)
    finally:
        engine.dispose()
    grant_read_only(settings.serving_db_url, settings.dashboard_db_user)


def ensure_reader_role(conn: Connection, role: str) -> None:
    """A login role that can only read: no superuser, database or role creation, read-only transactions.

    The local cluster trusts loopback connections (``initdb --auth=trust``), as it does for ``dse``,
    so the role has no password: its rights, not a secret, are what keeps the dashboard from writing.
    """
    name = conn.dialect.identifier_preparer.quote(role)
    if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).scalar():
        conn.execute(text(f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"))
    conn.execute(text(f"ALTER ROLE {name} SET default_transaction_read_only = on"))


def grant_read_only(url: str, role: str) -> None:
    """Let ``role`` read every table of the database at ``url``, present and future, and create nothing there.

    Run as the database's owner (the user of ``url``), whose future tables (the migrations') the default
    privileges cover. Idempotent: ``dse up`` runs it at every start.
    """
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            name = conn.dialect.identifier_preparer.quote(role)
            database = conn.dialect.identifier_preparer.quote(conn.execute(text("SELECT current_database()")).scalar())
            for statement in (
                    f"GRANT CONNECT ON DATABASE {database} TO {name}",
                    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                    f"GRANT USAGE ON SCHEMA public TO {name}",
                    f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {name}",
                    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {name}"):
                conn.execute(text(statement))
    finally:
        engine.dispose()
