#!/usr/bin/env bash
# Start the MLflow tracking server + model registry (the compose file's `mlflow` service runs this).
#
# Every setting is an environment variable; the defaults suit a single container whose
# generated state lives under /opt/dse/var (DSE_HOME in the images):
#   MLFLOW_BACKEND_STORE_URI      metadata + registry store (SQLAlchemy URL)
#                                 default sqlite:////opt/dse/var/mlflow/mlflow.db;
#                                 compose: postgresql+psycopg2://mlflow:<MLFLOW_DB_PASSWORD>@postgres:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION  where proxied artifacts are stored (a path or s3://, gs://, ...)
#                                 default /opt/dse/var/mlflow/artifacts
#   MLFLOW_HOST / MLFLOW_PORT     bind address and port (default 0.0.0.0:5000)
#   MLFLOW_WORKERS                uvicorn worker processes (default 1, as `dse up` runs it)
#   MLFLOW_SERVER_ALLOWED_HOSTS   Host headers the server answers (DNS-rebinding protection);
#                                 must include the compose service name or clients calling
#                                 http://mlflow:5000 get HTTP 403
#   MLFLOW_APP_NAME               empty, or "basic-auth" to turn on MLflow's basic auth
#                                 (then MLFLOW_AUTH_CONFIG_PATH names the ini: see basic_auth.ini.example)
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION  default false, as `dse up` runs it: the job runner and its
#                                 consumer processes (~275 MB each) serve nothing the platform uses
#
# --serve-artifacts makes the server proxy artifact uploads/downloads, so clients (Airflow's
# trainer, the Spark streaming job) need no access to the artifact store itself, only HTTP.
set -euo pipefail

: "${MLFLOW_BACKEND_STORE_URI:=sqlite:////opt/dse/var/mlflow/mlflow.db}"
: "${MLFLOW_ARTIFACTS_DESTINATION:=/opt/dse/var/mlflow/artifacts}"
: "${MLFLOW_HOST:=0.0.0.0}"
: "${MLFLOW_PORT:=5000}"
: "${MLFLOW_WORKERS:=1}"
: "${MLFLOW_SERVER_ALLOWED_HOSTS:=mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*}"
: "${MLFLOW_APP_NAME:=}"
: "${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:=false}"
# mlflow reads these variables itself; exporting them (instead of passing --allowed-hosts) keeps
# one source of truth for each
export MLFLOW_SERVER_ALLOWED_HOSTS MLFLOW_SERVER_ENABLE_JOB_EXECUTION

# A SQLite store or a local artifact folder needs its directory to exist first.
case "$MLFLOW_BACKEND_STORE_URI" in
  sqlite:///*) mkdir -p "$(dirname "${MLFLOW_BACKEND_STORE_URI#sqlite:///}")" ;;
esac
case "$MLFLOW_ARTIFACTS_DESTINATION" in
  file://*) mkdir -p "${MLFLOW_ARTIFACTS_DESTINATION#file://}" ;;
  *://*) ;;  # remote store (s3://, gs://, ...): nothing to create here
  *) mkdir -p "$MLFLOW_ARTIFACTS_DESTINATION" ;;
esac

args=(
  server
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI"
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION"
  --serve-artifacts
  --host "$MLFLOW_HOST"
  --port "$MLFLOW_PORT"
  --workers "$MLFLOW_WORKERS"
)
if [ -n "$MLFLOW_APP_NAME" ]; then
  if [ "$MLFLOW_APP_NAME" = "basic-auth" ] && [ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]; then
    echo "start-server.sh: MLFLOW_APP_NAME=basic-auth needs MLFLOW_AUTH_CONFIG_PATH (see mlflow/basic_auth.ini.example)" >&2
    exit 2
  fi
  args+=(--app-name "$MLFLOW_APP_NAME")
fi

echo "start-server.sh: mlflow ${args[*]}" | sed -E 's#(://[^:/@]+:)[^@]*@#\1***@#g'
# exec: the server replaces this shell, so it gets the container's signals (clean stop).
exec mlflow "${args[@]}"
