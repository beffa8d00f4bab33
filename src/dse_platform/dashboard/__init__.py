"""The Streamlit dashboard on the serving database: market, instrument, model and pipeline pages.

``app.py`` is the entry point (``dse up`` runs it as the supervised program ``dashboard``,
see ``server.py``); ``queries.py`` holds every SQL statement, ``charts.py`` every figure,
``views/`` one module per page; ``connection.py`` opens the database read-only.
"""
