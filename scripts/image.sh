#!/usr/bin/env bash
# Builds Keyway's container image without a registry or an engine: the `dist` build of the keyway binary, the
# shared libraries it links (glibc's, from this machine), the CA bundle, /etc/passwd and /etc/group naming the
# non-root user 65532, assembled from scratch with buildah (vfs storage, chroot isolation: runs as root, offline).
# No shell, no package manager. Writes the image as an OCI archive and prints its path.
#
#   scripts/image.sh [OUT_DIR]     (default: $CARGO_TARGET_DIR/image)
#
# The image's name is the Helm chart's one value, `image.repository` in deploy/chart/keyway/values.yaml, tagged
# with the binary's version (the chart's appVersion). Idempotent: rebuilds the image from the current binary.
# The Dockerfile builds the same layout for users with a Docker engine and registry access.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/keyway/target}
out=${1:-$CARGO_TARGET_DIR/image}

if [ "$(id -u)" -ne 0 ]; then
  echo "error: scripts/image.sh builds with buildah's chroot isolation, which needs root; run it as root" >&2
  exit 1
fi
if ! command -v buildah >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "==> installing buildah" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
  else
    echo "error: buildah is missing; install it (Debian: apt-get install buildah)" >&2
    exit 1
  fi
fi
bundle=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$bundle" ]; then
  echo "error: $bundle is missing; install ca-certificates (apt-get install ca-certificates)" >&2
  exit 1
fi

echo "==> cargo build --profile dist -p keyway" >&2
source "$root/scripts/dist.sh"
cargo build --profile dist --locked -p keyway
binary=$CARGO_TARGET_DIR/dist/keyway
version=$("$binary" --version | awk '{print $2}')
repository=$(sed -n 's/^  repository: *//p' deploy/chart/keyway/values.yaml)
if [ -z "$repository" ]; then
  echo "error: no image.repository in deploy/chart/keyway/values.yaml" >&2
  exit 1
fi
image=$repository:$version
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# The image's dates are the commit's, so the same commit builds the same configuration.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

rootfs=$(mktemp -d)
chmod 0755 "$rootfs"
trap 'rm -rf "$rootfs"' EXIT
install -D -m 0755 "$binary" "$rootfs/usr/local/bin/keyway"
# Every shared object the binary loads, at the path the loader looks for it.
for lib in $(ldd "$binary" | awk '/=> \// {print $3} /^\t\// {print $1}'); do
  install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done
install -D -m 0644 "$bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
install -d -m 0755 "$rootfs/etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
install -d -m 1777 "$rootfs/tmp"
install -d -m 0755 "$rootfs/run/keyway" "$rootfs/etc/keyway"

storage=(--storage-driver vfs)
ctr=$(buildah "${storage[@]}" from scratch)
cleanup() { buildah "${storage[@]}" rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$rootfs"; }
trap cleanup EXIT
buildah "${storage[@]}" copy --quiet "$ctr" "$rootfs" / >/dev/null
# The user's home, its own (buildah copy gives what it copies to root unless told otherwise).
home=$(mktemp -d)
buildah "${storage[@]}" copy --quiet --chown 65532:65532 --chmod 0700 "$ctr" "$home" /home/nonroot >/dev/null
rmdir "$home"
buildah "${storage[@]}" config \
  --user 65532:65532 \
  --workingdir /home/nonroot \
  --env HOME=/home/nonroot \
  --env PATH=/usr/local/bin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --entrypoint '["/usr/local/bin/keyway"]' --cmd '["--help"]' \
  --label org.opencontainers.image.title=keyway \
  --label "org.opencontainers.image.description=Keyway: secrets for Ray, Kubernetes and Flyte workloads (daemon, CLI, webhook)" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.created=$created" \
  --label org.opencontainers.image.source=https://github.com/keyway-dev/keyway \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --label "org.opencontainers.image.ref.name=$version" \
  "$ctr"
buildah "${storage[@]}" commit --quiet --format oci --rm "$ctr" "$image" >/dev/null
mkdir -p "$out"
archive=$out/keyway-$version-oci.tar
rm -f "$archive"
buildah "${storage[@]}" push --quiet "$image" "oci-archive:$archive:$image" >&2
echo "==> $image: $(du -m "$archive" | cut -f1) MB archive, $(buildah "${storage[@]}" images --format '{{.Size}}' "$image") unpacked" >&2
echo "$archive"
