#!/bin/sh
# Build the images for the compose stack without pulling from any image
# registry (this project's CI has none): only Debian's package mirror and
# this checkout are used.
#
#   compose/build-local.sh
#   docker compose -f compose/docker-compose.yml -f compose/docker-compose.local.yml up -d
#
# 1. the base image agent-base:bookworm (debootstrap + docker import, see
#    base-image.sh), unless it exists already: PostgreSQL 15, tini, etcd and
#    HAProxy from Debian packages. It also runs etcd and HAProxy in the stack;
# 2. the agent binaries: `cargo build --release` on this machine (a Debian
#    bookworm or compatible glibc), or copied from $AGENT_BINARIES_DIR when set,
#    staged in compose/prebuilt/;
# 3. the node image agent:local (compose/Dockerfile with BINARIES=prebuilt).
#
# Environment: AGENT_BASE_IMAGE [agent-base:bookworm], AGENT_IMAGE
# [agent:local], AGENT_BINARIES_DIR [build with cargo], and base-image.sh's.
set -eu
cd "$(dirname "$0")/.."

BASE=${AGENT_BASE_IMAGE:-agent-base:bookworm}
IMAGE=${AGENT_IMAGE:-agent:local}

AGENT_BASE_IMAGE=$BASE compose/base-image.sh

mkdir -p compose/prebuilt
if [ -n "${AGENT_BINARIES_DIR:-}" ]; then
    src=$AGENT_BINARIES_DIR
    echo "== binaries from $src"
else
    echo "== cargo build --release -p agent --bins"
    cargo build --release --locked -p agent --bins
    src=$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release
fi
for b in agent agentctl; do
    [ -x "$src/$b" ] || { echo "build-local.sh: $src/$b is missing" >&2; exit 1; }
    # A fresh copy (not a link: the build context must hold the bytes).
    rm -f "compose/prebuilt/$b"
    cp "$src/$b" "compose/prebuilt/$b"
    chmod 0755 "compose/prebuilt/$b"
done

echo "== docker build $IMAGE"
docker build -f compose/Dockerfile -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE" \
    --build-arg BUILD_IMAGE="$BASE" \
    --build-arg BINARIES=prebuilt .
# The classic builder keeps the binaries stage and the image the tag pointed
# to before as untagged images; remove those of ours, nothing else.
docker image prune -f --filter label=org.agent.build-stage=binaries >/dev/null
docker image prune -f --filter label=org.agent.image=node >/dev/null
docker image ls "$IMAGE"
