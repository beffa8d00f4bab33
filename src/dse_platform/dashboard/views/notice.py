"""What a page shows instead of data: an empty or not yet migrated database, or one that does not answer."""

from __future__ import annotations

import streamlit as st

from dse_platform.config import Settings
from dse_platform.dashboard import connection, display
from dse_platform.dashboard.queries import DataState

HOW_TO_FILL = """\
To fill it, run

```bash
make demo    # everything: the services, a first model, a replayed year through the stream
```

or, with the services up (`dse up`) and a model promoted (`dse train --promote`):

```bash
dse stream --background    # the streaming job, under supervisor
dse replay --from 2025-01-01    # stored bars into Kafka, for the stream to score
```

This page refreshes on its own and shows the data as soon as the stream has written some.
"""


def empty(settings: Settings, state: DataState | None) -> None:
    """No rows yet (or no database file yet): say what to run."""
    st.header("No data yet")
    where = display.literal(connection.describe(settings))
    if state is not None and state.revision is not None and not state.current:
        st.warning(f"The serving database ({where}) is at schema revision {state.revision}; this dashboard reads "
                   f"revision {state.head}. Starting the streaming job (`dse stream --background`, or `make demo`) "
                   "migrates it: the dashboard itself only reads.")
        return
    st.info(f"The serving database ({where}) holds no bars or predictions yet.")
    st.markdown(HOW_TO_FILL)


def unreachable(settings: Settings, error: Exception) -> None:
    """The database did not answer: the driver's first line and what to do."""
    st.header("Serving database unreachable")
    first = (str(getattr(error, "orig", error)).strip().splitlines() or [""])[0]
    st.error(f"The dashboard could not read {display.literal(connection.describe(settings))}: "
             f"{display.literal(first)}")
    st.markdown("Start the platform with `dse up` (`dse status` shows what is down). On PostgreSQL the dashboard "
                f"connects as the read-only role `{settings.dashboard_db_user}` that `dse up` "
                "creates; with `DSE_DB_URL` set, give it a read-only role through `DSE_DASHBOARD_DB_URL`.")
