#!/usr/bin/env bash
# Builds the container image without a Docker daemon: buildah with vfs storage and chroot
# isolation (Debian's package). Public base images cannot be pulled on our CI machines, so the
# runtime base is assembled locally (the host's glibc libraries the binary needs, CA
# certificates, a non-root user) and the binary is built on the host (BINARY_STAGE=prebuilt).
# Then checks that the image runs `trustkeeper --version` as a non-root user.
set -euo pipefail
cd "$(dirname "$0")/.."
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
TAG=${IMAGE_TAG:-localhost/trustkeeper:ci}
BASE=localhost/trustkeeper-base:local

. scripts/lib.sh
command -v buildah >/dev/null || apt_install buildah
cargo build --release --locked --bin trustkeeper
BIN=${CARGO_TARGET_DIR:-target}/release/trustkeeper

# A distroless-like base: glibc and the libraries the binary links, CA certificates, passwd
# entries for root and nonroot (65532), a writable /tmp. No shell.
ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")
for lib in $(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}'); do
  cp -L --parents "$lib" "$mnt/"
done
mkdir -p "$mnt/etc/ssl/certs" "$mnt/tmp" "$mnt/home/nonroot"
chmod 1777 "$mnt/tmp"
cp -L /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$mnt/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$mnt/etc/group"
chown 65532:65532 "$mnt/home/nonroot"
buildah umount "$ctr" >/dev/null
buildah commit -q "$ctr" "$BASE" >/dev/null

# A build context with just the Dockerfile and the binary where the `prebuilt` stage expects it.
ctx=$(mktemp -d)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$ctx"' EXIT
mkdir -p "$ctx/target/release"
cp Dockerfile "$ctx/"
cp "$BIN" "$ctx/target/release/trustkeeper"
buildah bud -q --layers=false --build-arg RUNTIME_IMAGE="$BASE" --build-arg BINARY_STAGE=prebuilt \
  -t "$TAG" "$ctx" >/dev/null

user=$(buildah inspect --format '{{.OCIv1.Config.User}}' "$TAG")
[ "$user" = "65532:65532" ] || { echo "image runs as '$user', expected 65532:65532"; exit 1; }
run=$(buildah from "$TAG")
out=$(buildah run --user 65532:65532 "$run" -- /usr/local/bin/trustkeeper --version)
buildah rm "$run" >/dev/null
echo "$out"
case "$out" in trustkeeper\ *) ;; *) echo "unexpected --version output"; exit 1 ;; esac
size=$(buildah images --format '{{.Size}}' "$TAG" | head -1)
echo "image $TAG built: runs as user $user, size $size"
