#!/usr/bin/env bash
# The main job against a local default, on a fresh Debian machine: installs what is missing,
# starts a local notary-server + notary-signer + registry (tests/support/testbed.sh, real Debian
# packages on loopback), pushes sample images (a multi-arch manifest list and an OCI index among
# them) and signs them with the real notary Go client, lets one role near its expiry, then runs
# `trustkeeper reconcile` on a SignedImage, prints `trustkeeper inspect`, and shows that the real
# notary client agrees. Services are stopped at the end (KEEP=1 keeps them running).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

. scripts/lib.sh
ensure_build_tools

say "building trustkeeper"
cargo build --locked --bin trustkeeper
TK=$ROOT/target/debug/trustkeeper

DIR=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/trustkeeper-demo.XXXXXX")}
TB=$ROOT/tests/support/testbed.sh
[ "${KEEP:-0}" = 1 ] || trap '"$TB" down "$DIR" >/dev/null 2>&1 || true' EXIT

say "starting notary-server, notary-signer and a registry on loopback (installs them if missing)"
"$TB" up "$DIR" >"$DIR.up.log" 2>&1 || { cat "$DIR.up.log"; exit 1; }
. "$DIR/env"
GUN=$REGISTRY_HOST/demo/app

say "pushing sample images and signing v1 with the real notary client (as docker trust sign would)"
"$TB" seed "$DIR" "$GUN" | tail -3
SEED=$(ls -d "$DIR"/seed/*)
say "targets/releases is made to expire in 90 days: inside the clients' 6-month warning window"
"$TB" age "$DIR" "$GUN" targets/releases +90d
"$NOTARY_CLIENT" list "$GUN" 2>&1 | grep -i "nearing expiry" || true

say "a SignedImage for every tag, with the delegation key from \`notary key export\` in a Secret"
b64() { base64 -w0 "$1"; }
cat >"$DIR/signedimage.yaml" <<YAML
apiVersion: trustkeeper.dev/v1alpha1
kind: SignedImage
metadata: {name: app, namespace: demo}
spec:
  image: $GUN
  tags: ["v1", "latest", "multi", "oci-*"]
  roles: ["targets/releases"]
  signingKey:
    secretRef: {name: app-signer}
  registry:
    ca: {secretKeyRef: {name: local-ca, key: ca.crt}}
  notary:
    url: $NOTARY_URL
    ca: {secretKeyRef: {name: local-ca, key: ca.crt}}
---
apiVersion: v1
kind: Secret
metadata: {name: app-signer, namespace: demo}
data:
  key.pem: $(b64 "$TESTBED_KEYS_DIR/delegation.key.pem")
  passphrase: $(b64 "$TESTBED_KEYS_DIR/delegation.passphrase")
---
apiVersion: v1
kind: Secret
metadata: {name: local-ca, namespace: demo}
data:
  ca.crt: $(b64 "$CA_CERT")
YAML
sed -n '1,16p' "$DIR/signedimage.yaml"

export TRUSTKEEPER_TRUST_DIR=$DIR/trustkeeper TRUSTKEEPER_CA_FILE=$CA_CERT TRUSTKEEPER_NOTARY_URL=$NOTARY_URL
say "trustkeeper reconcile -f signedimage.yaml"
"$TK" reconcile -f "$DIR/signedimage.yaml"
say "status written beside the file"
grep -E "reason|message|tagSummary|earliestExpiry" "$DIR/signedimage.yaml.status.yaml"

say "trustkeeper inspect $GUN"
"$TK" inspect "$GUN"

say "the real notary client agrees (no 'nearing expiry' warning any more)"
"$NOTARY_CLIENT" list "$GUN" -r targets/releases
"$TB" verify "$DIR" "$GUN" | tail -2

say "a second reconcile has nothing to do"
"$TK" reconcile -f "$DIR/signedimage.yaml"
[ "${KEEP:-0}" = 1 ] && echo "services keep running: . $DIR/env; $TB down $DIR"
echo "demo done"
