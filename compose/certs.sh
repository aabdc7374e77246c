#!/bin/sh
# Make the certificates for the TLS variant of the compose stack
# (docker-compose.tls.yml): one CA and, signed by it,
#
#   etcd1..3      etcd's client and peer certificate (SAN: the service name,
#                 localhost, 127.0.0.1; serverAuth + clientAuth)
#   node1..3      one per node: the REST API's server certificate, PostgreSQL's
#                 server certificate, and the node's client certificate towards
#                 etcd and the other nodes' REST APIs (SAN: node name,
#                 localhost, 127.0.0.1)
#   haproxy       HAProxy's client certificate for its health checks
#                 (restapi.verify_client: required); haproxy.pem = cert + key
#   etcd-root     CN=root: etcd's root user by certificate, for setting up
#                 etcd's authentication and for etcdctl by hand
#
# into compose/certs/ (git-ignored). Keys are EC P-256, mode 0600; the stack's
# one-shot `tls-init` service copies them into a volume owned by the user that
# reads them in each container (postgres in the nodes), so this script needs
# no root and no knowledge of container uids.
#
#   compose/certs.sh             # CA (unless it exists) + every certificate
#   compose/certs.sh --new-ca    # a new CA too (every member must be restarted)
#
# Rotation: run it again (the CA is kept, the other certificates are replaced),
# then see compose/README.md, "TLS".
# Environment: CERTS_DIR [compose/certs; a relative path is taken from compose/],
# CERT_DAYS [825], CA_DAYS [3650].
set -eu
cd "$(dirname "$0")"
dir=${CERTS_DIR:-certs}
days=${CERT_DAYS:-825}
ca_days=${CA_DAYS:-3650}
command -v openssl >/dev/null || { echo "certs.sh: needs the openssl CLI (apt-get install openssl)" >&2; exit 1; }
case "${1:-}" in
'') new_ca=0 ;;
--new-ca) new_ca=1 ;;
*) echo "usage: compose/certs.sh [--new-ca]" >&2; exit 2 ;;
esac

mkdir -p "$dir"
chmod 0755 "$dir"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ "$new_ca" = 1 ] || [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
    echo "== CA ($dir/ca.crt)"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" -days "$ca_days" \
        -subj "/CN=agent compose demo CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
fi

# issue NAME CN EXTENDED_KEY_USAGE [SAN]
issue() {
    name=$1 cn=$2 eku=$3 san=${4:-}
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } >"$tmp/$name.ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$tmp/$name.key" -out "$tmp/$name.csr" -subj "/CN=$cn" 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
    openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -CAserial "$tmp/ca.srl" -days "$days" -sha256 \
        -extfile "$tmp/$name.ext" -out "$tmp/$name.crt" 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
    # Replace the pair only once both are made (a rerun never leaves a key
    # that does not match its certificate).
    mv -f "$tmp/$name.key" "$dir/$name.key"
    mv -f "$tmp/$name.crt" "$dir/$name.crt"
    chmod 0600 "$dir/$name.key"
    chmod 0644 "$dir/$name.crt"
    echo "   $name.crt  CN=$cn${san:+  $san}"
}

echo "== certificates in $dir (valid $days days)"
for n in 1 2 3; do
    issue "etcd$n" "etcd$n" serverAuth,clientAuth "DNS:etcd$n,DNS:localhost,IP:127.0.0.1"
done
for n in 1 2 3; do
    issue "node$n" "node$n" serverAuth,clientAuth "DNS:node$n,DNS:localhost,IP:127.0.0.1"
done
issue haproxy haproxy clientAuth
cat "$dir/haproxy.crt" "$dir/haproxy.key" >"$dir/haproxy.pem"
chmod 0600 "$dir/haproxy.pem"
issue etcd-root root clientAuth
chmod 0644 "$dir/ca.crt"
chmod 0600 "$dir/ca.key"
echo "== done; the stack: docker compose -f compose/docker-compose.yml -f compose/docker-compose.tls.yml up -d"
