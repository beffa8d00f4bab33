"""What the Airflow DAGs do, as plain functions; `orchestration.airflow` holds Airflow's side."""
