"""Alembic's entry point for the serving schema, driven only through ``dse_platform.serving.database``.

There is no alembic.ini: `database.alembic_config` hands over an open connection, so migrations
run on the very engine (and transaction) the platform uses, on PostgreSQL and SQLite alike.
"""

from alembic import context

from dse_platform.contracts.tables import METADATA, VERSION_TABLE
from dse_platform.errors import PlatformError

connection = context.config.attributes.get("connection")
if connection is None:
    raise PlatformError("the serving schema's migrations were started without a database connection",
                        "run them with dse_platform.serving.database.migrate(engine), not the alembic command line")
context.configure(connection=connection, target_metadata=METADATA, version_table=VERSION_TABLE, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
