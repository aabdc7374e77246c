#!/usr/bin/env bash
# Measure what synchronous replication costs: pgbench through HAProxy :5000 on the
# local three-node cluster, first asynchronous, then with synchronous_mode on.
#
#   cargo build --release && chaos/sync-latency.sh [SECONDS] [CLIENTS]
#
# Uses agent/examples/local-cluster.sh (etcd 127.0.0.1:2379, postgres 5432-5434,
# REST 8008-8010) and haproxy on 127.0.0.1:5000/5001/7000; stops both at the end.
# Prints one line per mode: tps and average latency (pgbench's numbers).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SECS=${1:-30}
CLIENTS=${2:-4}
PGBENCH=${PGBENCH:-/usr/lib/postgresql/15/bin/pgbench}
WORK=/tmp/agent-demo
export PGPASSWORD=postgres

cleanup() {
    [ -f "$WORK/haproxy.pid" ] && kill "$(cat "$WORK/haproxy.pid")" 2>/dev/null || true
    "$ROOT/agent/examples/local-cluster.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$ROOT/agent/examples/local-cluster.sh" start >/dev/null
"$ROOT/haproxy/haproxy-config.sh" --bind 127.0.0.1 \
    node1=127.0.0.1:5432:8008 node2=127.0.0.1:5433:8009 node3=127.0.0.1:5434:8010 >"$WORK/haproxy.cfg"
haproxy -D -p "$WORK/haproxy.pid" -f "$WORK/haproxy.cfg"

wait_for() { # description command...
    local what=$1; shift
    for _ in $(seq 1 150); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "timed out waiting for $what" >&2
    exit 1
}
replicas_streaming() {
    [ "$(psql -h 127.0.0.1 -p 5000 -U postgres -Atc \
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name LIKE 'node%'")" = 2 ]
}
wait_for "the primary behind :5000" psql -h 127.0.0.1 -p 5000 -U postgres -Atc "SELECT 1"
wait_for "two streaming replicas" replicas_streaming

"$PGBENCH" -h 127.0.0.1 -p 5000 -U postgres -i -s 10 -q postgres >/dev/null 2>&1

run() { # label
    local out
    out=$("$PGBENCH" -h 127.0.0.1 -p 5000 -U postgres -c "$CLIENTS" -j 2 -T "$SECS" -n postgres 2>&1)
    local tps lat
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
    lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    printf '%-13s clients=%s seconds=%s  tps=%s  latency_avg_ms=%s\n' "$1" "$CLIENTS" "$SECS" "$tps" "$lat"
}

run asynchronous
curl -fsS -XPATCH -d '{"synchronous_mode": true}' http://127.0.0.1:8008/config >/dev/null
sync_active() {
    [ -n "$(psql -h 127.0.0.1 -p 5000 -U postgres -Atc \
        "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'")" ]
}
wait_for "a synchronous standby" sync_active
run synchronous
curl -fsS -XPATCH -d '{"synchronous_mode": null}' http://127.0.0.1:8008/config >/dev/null
