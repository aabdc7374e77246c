#!/bin/sh
# Entry point of the agent image, run under tini (PID 1, which forwards
# signals and reaps orphans). Fills in the per-node settings from the
# container's hostname, checks that the passwords were given, then replaces
# itself with the command (by default `agent /etc/agent/agent.yml`), so the
# agent receives docker's SIGTERM directly from tini.
set -eu

if [ "${1:-}" = agent ] && [ "${2:-}" != --validate-config ]; then
    host=$(cat /proc/sys/kernel/hostname)
    export PATRONI_NAME="${PATRONI_NAME:-$host}"
    export PATRONI_RESTAPI_CONNECT_ADDRESS="${PATRONI_RESTAPI_CONNECT_ADDRESS:-$host:8008}"
    export PATRONI_POSTGRESQL_CONNECT_ADDRESS="${PATRONI_POSTGRESQL_CONNECT_ADDRESS:-$host:5432}"
    missing=''
    for var in PATRONI_SUPERUSER_PASSWORD PATRONI_REPLICATION_PASSWORD PATRONI_REWIND_PASSWORD \
        PATRONI_RESTAPI_USERNAME PATRONI_RESTAPI_PASSWORD; do
        eval "value=\${$var:-}"
        [ -n "$value" ] || missing="$missing $var"
    done
    if [ -n "$missing" ]; then
        echo "docker-entrypoint.sh: set$missing (compose/.env, or docker run --env-file compose/.env)" >&2
        exit 2
    fi
fi
exec "$@"
