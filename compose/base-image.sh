#!/bin/sh
# Build the base image for machines that cannot pull from any image registry:
# a Debian bookworm root file system made with debootstrap from Debian's own
# package mirror, imported with `docker import`. It holds what the stack runs
# besides our binaries: PostgreSQL 15, tini, etcd and HAProxy, so the same
# image serves the agent nodes, the etcd members and the load balancer.
#
#   compose/base-image.sh                  # build agent-base:bookworm unless it exists
#   compose/base-image.sh --force          # rebuild it
#
# Environment: AGENT_BASE_IMAGE (default agent-base:bookworm), DEBIAN_MIRROR
# (default http://deb.debian.org/debian), DEBOOTSTRAP_CACHE (where the .debs
# are kept between runs, default /var/cache/agent-debootstrap).
# Needs root (debootstrap), debootstrap and a Docker engine; takes 1-3 minutes.
set -eu

IMAGE=${AGENT_BASE_IMAGE:-agent-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${DEBOOTSTRAP_CACHE:-/var/cache/agent-debootstrap}
PACKAGES=postgresql-15,tini,ca-certificates,etcd-server,etcd-client,haproxy

if [ "${1:-}" != "--force" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "base image $IMAGE exists (use --force to rebuild)"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "base-image.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "base-image.sh: apt-get install debootstrap" >&2; exit 1; }

root=$(mktemp -d /tmp/agent-base.XXXXXX)
trap 'umount "$root/proc" 2>/dev/null || true; rm -rf "$root"' EXIT INT TERM
mkdir -p "$CACHE"

echo "== debootstrap bookworm into $root (packages: $PACKAGES)"
debootstrap --variant=minbase --cache-dir="$CACHE" --include="$PACKAGES" \
    bookworm "$root" "$MIRROR" >"$root.log" 2>&1 || {
    tail -n 40 "$root.log" >&2
    rm -f "$root.log"
    exit 1
}
rm -f "$root.log"

echo "== trimming"
# The package's default cluster (initdb'd by postgresql-common during install)
# is not ours: the agent creates its own data directory.
rm -rf "$root/etc/postgresql/15/main" "$root/var/lib/postgresql/15"
sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' \
    "$root/etc/postgresql-common/createcluster.conf"
# Sources for anyone who wants to apt-get inside a container later.
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* \
    "$root/usr/share/doc/"* "$root/usr/share/man/"* "$root/usr/share/info/"* \
    "$root/var/log/"*.log "$root/var/log/apt/"* "$root/tmp/"* "$root/etc/machine-id"
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +

echo "== docker import $IMAGE"
tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap bookworm + $PACKAGES (compose/base-image.sh)" \
    - "$IMAGE" >/dev/null
docker image ls "$IMAGE"
