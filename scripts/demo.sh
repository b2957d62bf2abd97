#!/usr/bin/env bash
# The main job against a local default, on a fresh Debian machine: installs what is missing,
# starts a local notary-server + notary-signer + registry (tests/support/testbed.sh, real Debian
# packages on loopback), pushes sample images (a multi-arch manifest list and an OCI index among
# them) and signs them with the real notary Go client, lets one role near its expiry, then runs
# `trustkeeper reconcile` on a SignedImage, prints `trustkeeper inspect`, and shows that the real
# notary client agrees. Then the way off Docker Content Trust: the same SignedImage with
# `formats: [notary, cosign, notation]` signs the same digests for cosign and Notation on one
# reconcile, and the real `cosign verify` and `notation verify` (tests/support/referees.sh,
# cached) agree; dropping notary from the formats leaves nothing to do. Services are stopped at
# the end (KEEP=1 keeps them running).
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
REFEREES=${XDG_CACHE_HOME:-$HOME/.cache}/trustkeeper/referees
tests/support/referees.sh install "$REFEREES" >"$DIR.referees.log" 2>&1 &
referees_pid=$!
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
say "installing the cosign and notation referees (cached in $REFEREES)"
wait "$referees_pid" || { tail -20 "$DIR.referees.log"; exit 1; }
. "$REFEREES/env"

say "moving off DCT: a certificate for the same key, and formats [notary, cosign, notation]"
"$TK" key certificate --key "$TESTBED_KEYS_DIR/delegation.key.pem" \
  --passphrase-file "$TESTBED_KEYS_DIR/delegation.passphrase" \
  --subject "CN=demo signer,O=trustkeeper demo,ST=WA,C=US" --out "$DIR/signer.crt"
{
  sed -e 's/^  roles: \["targets\/releases"\]$/&\n  formats: [notary, cosign, notation]\n  notation:\n    certificateSecretRef: {name: app-cert}/' "$DIR/signedimage.yaml"
  cat <<YAML
---
apiVersion: v1
kind: Secret
metadata: {name: app-cert, namespace: demo}
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$DIR/signer.crt")
YAML
} >"$DIR/signedimage-3.yaml"
sed -n '6,11p' "$DIR/signedimage-3.yaml"
say "trustkeeper reconcile -f signedimage-3.yaml: cosign and Notation signatures for every tag"
"$TK" reconcile -f "$DIR/signedimage-3.yaml"

say "trustkeeper inspect --format notary,cosign,notation: every tag in every format"
"$TK" inspect "$GUN" --format notary,cosign,notation --key "$TESTBED_KEYS_DIR/delegation.pub.pem" |
  sed -n '/^Signatures per tag/,$p' | grep -v '^    '

DIGEST=$("$NOTARY_CLIENT" list "$GUN" -r targets/releases | awk '$1 == "multi" {print $2}')
say "the real cosign agrees (cosign verify --key, no transparency log): $GUN@sha256:$DIGEST"
SSL_CERT_FILE=$CA_CERT HOME=$DIR/cosign-home "$COSIGN" verify --insecure-ignore-tlog \
  --key "$TESTBED_KEYS_DIR/delegation.pub.pem" "$GUN@sha256:$DIGEST" 2>&1 >/dev/null | grep -v '^WARNING' | head -5

say "the real notation agrees (a trust store holding the certificate, a strict policy)"
nota() { SSL_CERT_FILE=$CA_CERT HOME=$DIR/notation-home XDG_CONFIG_HOME=$DIR/notation-home/.config "$NOTATION" "$@"; }
nota cert add --type ca --store demo "$DIR/signer.crt" >/dev/null
cat >"$DIR/policy.json" <<JSON
{"version": "1.0", "trustPolicies": [{"name": "demo", "registryScopes": ["$GUN"],
  "signatureVerification": {"level": "strict"}, "trustStores": ["ca:demo"],
  "trustedIdentities": ["x509.subject: CN=demo signer,O=trustkeeper demo,ST=WA,C=US"]}]}
JSON
nota policy import --force "$DIR/policy.json" >/dev/null
nota verify "$GUN@sha256:$DIGEST"

say "after the cut-over: formats [cosign, notation], notary dropped: nothing to do"
sed -i 's/formats: \[notary, cosign, notation\]/formats: [cosign, notation]/' "$DIR/signedimage-3.yaml"
"$TK" reconcile -f "$DIR/signedimage-3.yaml"

[ "${KEEP:-0}" = 1 ] && echo "services keep running: . $DIR/env; $TB down $DIR"
echo "demo done"
