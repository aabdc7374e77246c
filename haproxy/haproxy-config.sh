#!/bin/sh
# Write an HAProxy configuration for a cluster of agent (or Patroni) nodes to
# stdout: one frontend for writes that reaches the primary, one for reads that
# reaches the replicas, and a stats page. Adding a node means re-running this
# with one more NODE argument, never hand-editing the output.
#
#   haproxy/haproxy-config.sh [options] NODE...
#
# NODE is NAME, NAME=HOST, NAME=HOST:PGPORT or NAME=HOST:PGPORT:RESTPORT
# (HOST defaults to NAME, PGPORT to 5432, RESTPORT to 8008).
#
# Options (defaults in brackets):
#   --bind ADDR            address the three frontends listen on [*]
#   --primary-port PORT    read-write frontend [5000]
#   --replica-port PORT    read-only frontend [5001]
#   --stats-port PORT      stats page, 0 for none [7000]
#   --replica-lag SIZE     only replicas whose replay lag is below SIZE serve
#                          reads, e.g. 16MB (GET /replica?lag=SIZE) [no bound]
#   --read-only            let the primary serve reads on the replica port too
#                          (checks GET /read-only instead of GET /replica)
#   --dns IP:PORT          re-resolve node names through this DNS server (use
#                          127.0.0.11:53 inside Docker, so a restarted container
#                          with a new address is followed) [resolve once]
#   --inter MS --fall N --rise N
#                          health-check timing [1000, 2 and 1]
#   --maxconn N            connections per node [100]
#   --check-ssl MODE       the nodes' REST APIs speak HTTPS (restapi.certfile):
#                          health-check over TLS; MODE `required` verifies the
#                          node's certificate against --ca-file, `none` does not
#                          (encrypted but unauthenticated) [plain HTTP checks]
#   --ca-file PATH         CA bundle for --check-ssl required (restapi.cafile's CA)
#   --check-crt PATH       PEM with a client certificate and its key, presented
#                          by the checks (needed with restapi.verify_client: required)
#
# Example (the committed haproxy/haproxy.cfg, for compose/):
#   haproxy/haproxy-config.sh --dns 127.0.0.11:53 node1 node2 node3 > haproxy/haproxy.cfg
set -eu

usage() {
    sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'
    exit 0
}

bind='*'
primary_port=5000
replica_port=5001
stats_port=7000
lag=''
read_only=no
dns=''
inter=1000
fall=2
rise=1
maxconn=100
check_ssl=''
ca_file=''
check_crt=''
command_line="haproxy/haproxy-config.sh"

unknown() {
    echo "haproxy-config.sh: unknown option $1 (see --help)" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --read-only) read_only=yes; command_line="$command_line $1"; shift; continue ;;
    -h | --help) usage ;;
    --) shift; break ;;
    --*)
        [ $# -ge 2 ] || { echo "haproxy-config.sh: $1 needs a value" >&2; exit 2; }
        command_line="$command_line $1 $2"
        case "$1" in
        --bind) bind=$2 ;;
        --primary-port) primary_port=$2 ;;
        --replica-port) replica_port=$2 ;;
        --stats-port) stats_port=$2 ;;
        --replica-lag) lag=$2 ;;
        --dns) dns=$2 ;;
        --inter) inter=$2 ;;
        --fall) fall=$2 ;;
        --rise) rise=$2 ;;
        --maxconn) maxconn=$2 ;;
        --check-ssl) check_ssl=$2 ;;
        --ca-file) ca_file=$2 ;;
        --check-crt) check_crt=$2 ;;
        *) unknown "$1" ;;
        esac
        shift 2
        ;;
    -*) unknown "$1" ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "haproxy-config.sh: name at least one NODE" >&2; exit 2; }
command_line="$command_line $*"

for n in "$primary_port" "$replica_port" "$stats_port" "$inter" "$fall" "$rise" "$maxconn"; do
    case "$n" in
    '' | *[!0-9]*) echo "haproxy-config.sh: not a number: '$n'" >&2; exit 2 ;;
    esac
done

replica_check=/replica
[ "$read_only" = yes ] && replica_check=/read-only
[ -n "$lag" ] && replica_check="$replica_check?lag=$lag"

# "name host pgport restport" per line, validated before anything is written.
nodes=''
for spec in "$@"; do
    name=${spec%%=*}
    addr=${spec#*=}
    [ "$addr" = "$spec" ] && addr=$name
    host=${addr%%:*}
    rest=${addr#"$host"}
    rest=${rest#:}
    pg=${rest%%:*}
    api=${rest#"$pg"}
    api=${api#:}
    pg=${pg:-5432}
    api=${api:-8008}
    case "$name$host" in
    '' | *[!A-Za-z0-9._-]*) echo "haproxy-config.sh: bad NODE '$spec'" >&2; exit 2 ;;
    esac
    case "$pg$api" in
    *[!0-9]*) echo "haproxy-config.sh: bad port in NODE '$spec'" >&2; exit 2 ;;
    esac
    nodes="$nodes$name $host $pg $api
"
done

resolve_opts=''
[ -n "$dns" ] && resolve_opts=' resolvers nodes resolve-prefer ipv4 init-addr last,libc,none'

# TLS health checks (the data connections to postgres are not affected).
ssl_opts=''
case "$check_ssl" in
'') [ -z "$ca_file$check_crt" ] || { echo "haproxy-config.sh: --ca-file and --check-crt need --check-ssl" >&2; exit 2; } ;;
none) ssl_opts=' check-ssl verify none' ;;
required)
    [ -n "$ca_file" ] || { echo "haproxy-config.sh: --check-ssl required needs --ca-file" >&2; exit 2; }
    ssl_opts=" check-ssl verify required ca-file $ca_file"
    ;;
*) echo "haproxy-config.sh: --check-ssl: expected none or required, got '$check_ssl'" >&2; exit 2 ;;
esac
[ -n "$check_crt" ] && ssl_opts="$ssl_opts crt $check_crt"

servers() {
    printf '%s' "$nodes" | while read -r name host pg api; do
        printf '    server %s %s:%s check port %s\n' "$name" "$host" "$pg" "$api"
    done
}

cat <<EOF
# HAProxy in front of a PostgreSQL cluster run by agent (or Patroni).
# Generated by: $command_line
# Regenerate instead of editing (adding a node is one more argument).
#
#   :$primary_port  read-write: the one node whose GET /primary answers 200 (the leader)
#   :$replica_port  read-only:  every node whose GET $replica_check answers 200, round-robin
EOF
if [ "$stats_port" != 0 ]; then
    echo "#   :$stats_port  stats page (which node is UP in which backend)"
fi
cat <<EOF
#
# How routing follows a failover: each node's agent answers the health checks
# on its REST port from the state its HA loop last published, in milliseconds,
# without asking postgres or etcd. A node answers 200 on /primary only while it
# holds the leader key in etcd and runs a primary.

# Server state changes (UP/DOWN and why) go to stderr when HAProxy runs in
# the foreground (-db), which is what containers and the tests do; no
# per-connection log.
global
    maxconn 1000

defaults
    mode tcp
    # A client whose server went away is not re-sent elsewhere mid-session;
    # a connection that could not be established is retried on another server.
    retries 2
    option redispatch
    timeout connect 2s
    # PostgreSQL sessions can idle for long (pools); TCP keepalives find dead peers.
    timeout client 30m
    timeout server 30m
    option clitcpka
    option srvtcpka
    # A health check that gets no answer within this counts as failed.
    timeout check 1s
EOF
if [ -n "$dns" ]; then
    cat <<EOF

# Node names are re-resolved while HAProxy runs: a container that is restarted
# may come back with another address, and one that is gone does not resolve.
resolvers nodes
    nameserver dns $dns
    resolve_retries 3
    timeout resolve 1s
    timeout retry 1s
    hold valid 5s
    hold nx 5s
    hold obsolete 5s
EOF
fi
if [ "$stats_port" != 0 ]; then
    cat <<EOF

listen stats
    mode http
    bind $bind:$stats_port
    stats enable
    stats uri /
    stats refresh 2s
EOF
fi
cat <<EOF

# Settings shared by every server line below (each backend repeats them so the
# two sections read on their own):
#   check port N    health-check the node's REST API on port N, not postgres
#   inter, fall, rise
#                   one check every ${inter} ms while nothing changes; $fall failed checks
#                   in a row mark a node DOWN, $rise good one marks it UP again.
#                   Fast on purpose, and safe: routing is not what keeps two
#                   primaries apart. An agent fences its primary (stops it and
#                   restarts it read-only) before its leader lease can expire, so
#                   by the time another node can answer 200 on /primary the old
#                   one is no longer writable, whatever HAProxy still thinks.
#                   fall x inter only bounds how long clients are still sent to
#                   a node that stopped being primary; keep it well below the
#                   cluster's ttl - loop_wait - retry_timeout.
#   fastinter, downinter
#                   check faster while a state change is under way and while a
#                   node is DOWN, so a new primary is in use within ~0.5 s of
#                   its /primary turning 200.
#   on-marked-down shutdown-sessions
#                   close every client session of a node the moment it is marked
#                   DOWN, so clients of a demoted primary reconnect (to the new
#                   one) at once instead of keeping a dead or read-only session.
#   maxconn         connections per node; keep it below postgres max_connections.
EOF
if [ -n "$ssl_opts" ]; then
    cat <<EOF
#   check-ssl       the health checks speak HTTPS to the REST API (restapi.certfile);
#                   verify required + ca-file: only a node whose certificate the
#                   CA signed can answer them; crt: the checks' client certificate.
EOF
fi
if [ -n "$dns" ]; then
    cat <<EOF
#   resolvers, init-addr
#                   start even when a name does not resolve yet, and follow a
#                   node whose address changes.
EOF
fi
cat <<EOF

listen primary
    bind $bind:$primary_port
    option httpchk
    http-check send meth GET uri /primary
    http-check expect status 200
    default-server inter ${inter}ms fastinter 250ms downinter 500ms fall $fall rise $rise on-marked-down shutdown-sessions maxconn $maxconn$resolve_opts$ssl_opts
EOF
servers
cat <<EOF

listen replicas
    bind $bind:$replica_port
    balance roundrobin
    option httpchk
    http-check send meth GET uri $replica_check
    http-check expect status 200
    default-server inter ${inter}ms fastinter 250ms downinter 500ms fall $fall rise $rise on-marked-down shutdown-sessions maxconn $maxconn$resolve_opts$ssl_opts
EOF
servers
