"""Airflow-specific pieces the DAGs import: defaults, sensors, the REST client."""
