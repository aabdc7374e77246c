#!/bin/sh
# One-shot `tls-init` service of docker-compose.tls.yml: copies the files that
# compose/certs.sh made (mounted read-only at /certs) into one small volume per
# container, owned by the user that reads them there, keys mode 0600:
#
#   /tls/etcdN     etcd member N (runs as root):   ca.crt etcd.crt etcd.key
#   /tls/nodeN     node N (postgres, the image's user): ca.crt node.crt node.key
#   /tls/haproxy   HAProxy (uid $HAPROXY_UID, 99 in the haproxy image): ca.crt haproxy.pem
#   /tls/admin     the one-shot etcd-auth service (root): ca.crt etcd-root.crt etcd-root.key
#
# postgres refuses a server key that others can read, and the node containers
# run as postgres, whose uid depends on the image; this runs as root in the node
# image, so `postgres` is the right uid whatever the image. The CA's key never
# leaves compose/certs. Runs again on every `up` (and for rotation, see
# compose/README.md).
set -eu
src=/certs
[ -s "$src/ca.crt" ] || { echo "tls-init: no certificates in compose/certs: run compose/certs.sh" >&2; exit 1; }

# put FILE DEST OWNER MODE
put() {
    [ -s "$src/$1" ] || { echo "tls-init: compose/certs/$1 is missing: run compose/certs.sh" >&2; exit 1; }
    cp "$src/$1" "$2.new"
    chown "$3" "$2.new"
    chmod "$4" "$2.new"
    mv -f "$2.new" "$2"
}

for n in 1 2 3; do
    d=/tls/etcd$n
    put ca.crt "$d/ca.crt" 0:0 0644
    put "etcd$n.crt" "$d/etcd.crt" 0:0 0644
    put "etcd$n.key" "$d/etcd.key" 0:0 0600
    d=/tls/node$n
    put ca.crt "$d/ca.crt" postgres:postgres 0644
    put "node$n.crt" "$d/node.crt" postgres:postgres 0644
    put "node$n.key" "$d/node.key" postgres:postgres 0600
done
hu=${HAPROXY_UID:-99}
put ca.crt /tls/haproxy/ca.crt "$hu:$hu" 0644
put haproxy.pem /tls/haproxy/haproxy.pem "$hu:$hu" 0600
put ca.crt /tls/admin/ca.crt 0:0 0644
put etcd-root.crt /tls/admin/etcd-root.crt 0:0 0644
put etcd-root.key /tls/admin/etcd-root.key 0:0 0600
echo "tls-init: certificates in place ($(openssl x509 -in "$src/node1.crt" -noout -enddate 2>/dev/null || echo "node1.crt"))"
