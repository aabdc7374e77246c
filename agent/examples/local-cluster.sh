#!/usr/bin/env bash
# A three-node cluster on this machine (loopback only): one etcd and three agents
# using agent/examples/node{1,2,3}.yml.
#
#   agent/examples/local-cluster.sh start    # etcd + node1..3, returns once a primary answers
#   agent/examples/local-cluster.sh status   # who is primary, who streams
#   agent/examples/local-cluster.sh stop     # SIGTERM the agents (they stop postgres), then etcd
#   agent/examples/local-cluster.sh clean    # stop and remove /tmp/agent-demo
#
# Env: AGENT (binary; default target/release/agent, else target/debug/agent),
#      RUN_AS (user for agents and postgres when started as root; default postgres).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DEMO=/tmp/agent-demo
RUN_AS=${RUN_AS:-postgres}
AGENT=${AGENT:-}
if [ -z "$AGENT" ]; then
    for c in "$ROOT/target/release/agent" "$ROOT/target/debug/agent"; do
        [ -x "$c" ] && { AGENT=$c; break; }
    done
fi

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pidof_file() { [ -f "$1" ] && cat "$1" || true; }

start() {
    [ -n "$AGENT" ] || { echo "build first: cargo build --release" >&2; exit 1; }
    command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
    mkdir -p "$DEMO"
    # the agents run as $RUN_AS and need to read the binary and configs
    install -m 0755 "$AGENT" "$DEMO/agent"
    for i in 1 2 3; do
        mkdir -p "$DEMO/node$i"
        cp "$HERE/node$i.yml" "$DEMO/node$i.yml"
    done
    if ! alive "$(pidof_file "$DEMO/etcd.pid")"; then
        etcd --name demo --data-dir "$DEMO/etcd" \
            --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
            --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
            --initial-cluster demo=http://127.0.0.1:2380 >"$DEMO/etcd.log" 2>&1 &
        echo $! >"$DEMO/etcd.pid"
    fi
    for _ in $(seq 1 50); do
        curl -fsS --max-time 1 http://127.0.0.1:2379/health 2>/dev/null | grep -q true && break
        sleep 0.2
    done
    if [ "$(id -u)" = 0 ]; then
        chown -R "$RUN_AS": "$DEMO"
        chown root: "$DEMO/etcd.pid" "$DEMO/etcd.log"
    fi
    for i in 1 2 3; do
        alive "$(pidof_file "$DEMO/node$i.pid")" && continue
        if [ "$(id -u)" = 0 ]; then
            setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups \
                env HOME="$DEMO/node$i" "$DEMO/agent" "$DEMO/node$i.yml" >>"$DEMO/node$i.log" 2>&1 &
        else
            "$DEMO/agent" "$DEMO/node$i.yml" >>"$DEMO/node$i.log" 2>&1 &
        fi
        echo $! >"$DEMO/node$i.pid"
    done
    for _ in $(seq 1 100); do
        for port in 8008 8009 8010; do
            if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/primary")" = 200 ]; then
                echo "primary answers on REST port $port; logs in $DEMO/node*.log"
                status
                return 0
            fi
        done
        sleep 0.2
    done
    echo "no primary yet; see $DEMO/node*.log" >&2
    return 1
}

status() {
    curl -s --max-time 2 http://127.0.0.1:8008/cluster || curl -s --max-time 2 http://127.0.0.1:8009/cluster || true
    echo
}

stop() {
    for i in 1 2 3; do
        p=$(pidof_file "$DEMO/node$i.pid")
        alive "$p" && kill -TERM "$p"
    done
    for i in 1 2 3; do
        p=$(pidof_file "$DEMO/node$i.pid")
        for _ in $(seq 1 100); do alive "$p" || break; sleep 0.2; done
        rm -f "$DEMO/node$i.pid"
    done
    p=$(pidof_file "$DEMO/etcd.pid")
    alive "$p" && kill -TERM "$p"
    rm -f "$DEMO/etcd.pid"
    echo "stopped"
}

case "${1:-}" in
    start) start ;;
    status) status ;;
    stop) stop ;;
    clean) stop; rm -rf "$DEMO" ;;
    *) echo "usage: $0 start|status|stop|clean" >&2; exit 2 ;;
esac
