#!/bin/sh
# One-shot `etcd-auth` service of docker-compose.tls.yml: turns on etcd's
# authentication once the three members are up. Idempotent (every `up` runs it):
#
#   user root (password ETCD_ROOT_PASSWORD; also any client presenting a
#             certificate with CN=root, which is how this script logs in)
#   role agent: read-write on the agents' key prefix (/service/)
#   user agent (password ETCD_AGENT_PASSWORD) with role agent: what the nodes
#             log in as (PATRONI_ETCD3_USERNAME / PATRONI_ETCD3_PASSWORD)
#   auth enable
#
# etcd itself requires a client certificate signed by the CA on every
# connection (--client-cert-auth), so a password alone gets nobody in.
set -eu
: "${ETCD_ROOT_PASSWORD:?set it in compose/.env}"
: "${ETCD_AGENT_PASSWORD:?set it in compose/.env}"
prefix=${ETCD_AGENT_PREFIX:-/service/}
export ETCDCTL_API=3
ctl() {
    etcdctl --endpoints=https://etcd1:2379,https://etcd2:2379,https://etcd3:2379 \
        --cacert=/tls/ca.crt --cert=/tls/etcd-root.crt --key=/tls/etcd-root.key \
        --dial-timeout=3s --command-timeout=10s "$@"
}

tries=0
until ctl endpoint health >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || { ctl endpoint health >&2 || true; echo "etcd-auth: etcd is not healthy" >&2; exit 1; }
    sleep 2
done

ctl role get root >/dev/null 2>&1 || ctl role add root
if ctl user get root >/dev/null 2>&1; then
    printf '%s\n' "$ETCD_ROOT_PASSWORD" | ctl user passwd root --interactive=false >/dev/null
else
    ctl user add root --new-user-password="$ETCD_ROOT_PASSWORD" >/dev/null
fi
ctl user get root | grep -q '^Roles:.* root' || ctl user grant-role root root >/dev/null

ctl role get agent >/dev/null 2>&1 || ctl role add agent >/dev/null
ctl role grant-permission agent --prefix=true readwrite "$prefix" >/dev/null
if ctl user get agent >/dev/null 2>&1; then
    printf '%s\n' "$ETCD_AGENT_PASSWORD" | ctl user passwd agent --interactive=false >/dev/null
else
    ctl user add agent --new-user-password="$ETCD_AGENT_PASSWORD" >/dev/null
fi
ctl user get agent | grep -q '^Roles:.* agent' || ctl user grant-role agent agent >/dev/null

ctl auth enable >/dev/null
echo "etcd-auth: authentication on; user agent may read and write $prefix"
