"""The local PostgreSQL server used as serving database when none is configured.

Binaries come from Debian's ``postgresql`` package. PostgreSQL refuses to run
as root, so when we are root the cluster is created and run as the ``postgres``
system user that the package creates.

Every login needs a password (scram-sha-256, also on the Unix socket): the superuser
``postgres``, the application role ``dse`` that owns the serving database (no superuser:
the platform's DB URL uses it) and the dashboard's read-only role each get a generated
one, kept in ``var/secrets/postgres.json`` (see ``credentials.py``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import Connection, create_engine, text

from dse_platform import credentials
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


def _stored(settings: Settings) -> dict[str, str]:
    """The generated passwords; `dse up` makes them before anything here runs."""
    stored = credentials.read(credentials.postgres_file(settings.home))
    if stored is None or any(not stored.get(key) for key in credentials.POSTGRES_KEYS):
        raise PlatformError(f"the PostgreSQL passwords are missing from {credentials.postgres_file(settings.home)}",
                            "start the platform with `dse up`, which generates them")
    return stored


def check_not_passwordless(settings: Settings) -> None:
    """Refuse a cluster made before passwords were generated: its logins would not match the new file."""
    data = data_dir(settings)
    if (data / "PG_VERSION").exists() and not credentials.postgres_file(settings.home).exists():
        raise PlatformError(
            f"the PostgreSQL cluster in {data} was created without passwords (by an earlier version, or "
            f"{credentials.postgres_file(settings.home)} was deleted), so no login the platform knows works on it",
            f"after `dse down`, move {pg_dir(settings)} aside (dump the serving tables first if you need them) and "
            "`dse up` makes a new password-protected cluster; or point DSE_DB_URL at a database of your own")


def init_cluster(settings: Settings) -> bool:
    """Create the database cluster on first start: superuser ``postgres`` with its generated password,
    scram-sha-256 for every connection, listening on DSE_HOST only (see `command`)."""
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
    # initdb reads the superuser's password from a file it can open (it may run as `postgres`)
    pwfile = pg_dir(settings) / ".initdb-password"
    pwfile.unlink(missing_ok=True)
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(_stored(settings)["superuser_password"] + "\n")
    try:
        _own([pwfile], user)
        proc = subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", credentials.POSTGRES_SUPERUSER,
             "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale", "--no-instructions"],
            capture_output=True, text=True, user=user, timeout=300,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise PlatformError(f"initdb failed for {data}: {tail}", INSTALL_FIX)
    return True


def command(settings: Settings) -> list[str]:
    return [str(bin_dir(settings) / "postgres"), "-D", str(data_dir(settings)),
            "-p", str(settings.postgres_port), "-k", str(socket_dir(settings)),
            "-c", f"listen_addresses={settings.host}", "-c", "fsync=on"]


def admin_url(settings: Settings) -> str:
    """The superuser on the maintenance database, with its generated password."""
    return settings.local_postgres_url("superuser_password", credentials.POSTGRES_SUPERUSER, "postgres")


def health(settings: Settings) -> tuple[bool, str]:
    """The cluster answers on its maintenance database (the ``dse`` one may not exist yet)."""
    return sql_health(admin_url(settings))


def ensure_database(settings: Settings) -> None:
    """Create the application role and its ``dse`` database, and the dashboard's read-only role on it.

    Idempotent: at every start the roles get the passwords of the credentials file again.
    """
    stored = _stored(settings)
    engine = create_engine(admin_url(settings), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            # the role the platform writes the serving database as: its owner, but no superuser
            ensure_login_role(conn, credentials.POSTGRES_APP_ROLE, stored["app_password"])
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = 'dse'")).scalar()
            if not exists:
                conn.execute(text(f"CREATE DATABASE dse OWNER {credentials.POSTGRES_APP_ROLE}"))
            ensure_reader_role(conn, settings.dashboard_db_user, stored["reader_password"])
    finally:
        engine.dispose()
    grant_read_only(settings.serving_db_url, settings.dashboard_db_user)


def ensure_login_role(conn: Connection, role: str, password: str) -> str:
    """A login role with no superuser, database or role creation rights, and ``password``; its quoted name."""
    name = conn.dialect.identifier_preparer.quote(role)
    if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).scalar():
        conn.execute(text(f"CREATE ROLE {name} LOGIN"))
    # psycopg2 quotes the bound password client-side; the server stores its SCRAM hash (password_encryption)
    conn.execute(text(f"ALTER ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                      "PASSWORD :password"), {"password": password})
    return name


def ensure_reader_role(conn: Connection, role: str, password: str) -> None:
    """A login role that can only read: no superuser, database or role creation, read-only transactions.

    Its password keeps others out; its rights, not the secret, are what keep the dashboard from writing.
    """
    name = ensure_login_role(conn, role, password)
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
