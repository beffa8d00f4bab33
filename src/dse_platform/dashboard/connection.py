"""The dashboard's read-only way into the serving database.

The dashboard never holds write rights. On the local PostgreSQL it connects as the
read-only role `dse up` creates (``DSE_DASHBOARD_DB_USER``, granted SELECT only, see
``runtime/pgserver.py``) with its generated password; on a database of your own (``DSE_DB_URL``) through
``DSE_DASHBOARD_DB_URL``, which should name such a role. Every PostgreSQL session is
also opened read-only with a statement timeout, so even a URL with more rights cannot
write through the dashboard and a slow query cannot hang a page. The embedded SQLite
file is opened with ``mode=ro``: SQLite itself refuses every write.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from dse_platform.config import Settings

#: longest a dashboard query may run on PostgreSQL before the server cancels it
STATEMENT_TIMEOUT_MS = 15_000


def reader_url(settings: Settings) -> URL:
    """The URL the dashboard reads through: the serving database, as the read-only role where there is one."""
    if settings.dashboard_db_url:
        return make_url(settings.dashboard_db_url)
    if settings.local_postgres:
        return make_url(settings.local_postgres_url("reader_password", settings.dashboard_db_user, "dse"))
    return make_url(settings.serving_db_url)


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL (None for any other backend)."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database)


def describe(settings: Settings) -> str:
    """Where the dashboard reads, for its sidebar: the URL without a password."""
    return reader_url(settings).render_as_string(hide_password=True)


def engine(settings: Settings) -> Engine:
    """A read-only engine on the serving database (one per URL for the process)."""
    return _engine_for(reader_url(settings).render_as_string(hide_password=False))


@functools.cache
def _engine_for(url_text: str) -> Engine:
    url = make_url(url_text)
    path = sqlite_path(url)
    if path is not None:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        # no pool: a SQLite connection costs a file open, and none is kept on a file that may be replaced
        return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False,
                                                                          timeout=30), poolclass=NullPool)
    options = f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}"
    return create_engine(url, pool_pre_ping=True,
                         connect_args={"connect_timeout": 10, "options": options, "application_name": "dse-dashboard"})
