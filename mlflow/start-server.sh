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
#   MLFLOW_APP_NAME               empty, or "basic-auth" to turn on MLflow's basic auth (logins); then:
#     MLFLOW_AUTH_CONFIG_PATH     the auth ini (see basic_auth.ini.example); when unset, this script
#                                 writes one from the variables below
#     MLFLOW_AUTH_DATABASE_URI    users + permissions store (default sqlite:////opt/dse/var/mlflow/basic_auth.db)
#     MLFLOW_AUTH_DEFAULT_PERMISSION  READ (default), EDIT, MANAGE or NO_PERMISSIONS
#     MLFLOW_AUTH_ADMIN_USERNAME  admin created on first start (default admin; mlflow reads it itself)
#     MLFLOW_AUTH_CACHE_TTL_SECONDS  seconds a worker trusts a checked login (default 300; 0: hash every
#                                 request, slow; a password changed via one worker's API stays valid on others that long)
#     MLFLOW_AUTH_ADMIN_PASSWORD  its password, only used when it is first created (required then, 12+
#                                 characters; mlflow reads it itself); or MLFLOW_AUTH_ADMIN_PASSWORD_FILE
#     MLFLOW_FLASK_SERVER_SECRET_KEY  key signing the auth pages' forms, the same for every worker
#                                 (required); or MLFLOW_FLASK_SERVER_SECRET_KEY_FILE
#                                 The *_FILE forms read the value from a file (compose/docker secrets).
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
# VAR_FILE -> VAR: a secret handed over as a file (compose/docker secrets) instead of in the environment
for name in MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY; do
  file_var="${name}_FILE"
  if [ -n "${!file_var:-}" ]; then
    [ -r "${!file_var}" ] || { echo "start-server.sh: $file_var=${!file_var} is not a readable file" >&2; exit 2; }
    export "$name=$(cat "${!file_var}")"
  fi
done
if [ "$MLFLOW_APP_NAME" = "basic-auth" ]; then
  if [ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]; then
    echo "start-server.sh: MLFLOW_APP_NAME=basic-auth needs MLFLOW_FLASK_SERVER_SECRET_KEY (or _FILE): a random" \
         "string, the same for every worker (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" >&2
    exit 2
  fi
  if [ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]; then
    : "${MLFLOW_AUTH_DATABASE_URI:=sqlite:////opt/dse/var/mlflow/basic_auth.db}"
    : "${MLFLOW_AUTH_DEFAULT_PERMISSION:=READ}"
    case "$MLFLOW_AUTH_DATABASE_URI" in
      sqlite:///*) mkdir -p "$(dirname "${MLFLOW_AUTH_DATABASE_URI#sqlite:///}")" ;;
    esac
    # no password of a user in it (MLflow reads the admin's from the environment), but the
    # database URI may hold one: mktemp makes the file readable by this user only
    MLFLOW_AUTH_CONFIG_PATH="$(mktemp -t mlflow-basic-auth.XXXXXX)"
    cat > "$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION}
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-300}
EOF
    export MLFLOW_AUTH_CONFIG_PATH
  fi
fi
if [ -n "$MLFLOW_APP_NAME" ]; then
  args+=(--app-name "$MLFLOW_APP_NAME")
fi

echo "start-server.sh: mlflow ${args[*]}" | sed -E 's#(://[^:/@]+:)[^@]*@#\1***@#g'
# exec: the server replaces this shell, so it gets the container's signals (clean stop).
exec mlflow "${args[@]}"
