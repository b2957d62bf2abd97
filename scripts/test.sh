#!/usr/bin/env bash
# Runs every check and test of trustkeeper on a fresh Debian machine: installs what is missing,
# starts the real services on loopback (notary-server + notary-signer + registries, twice: plain
# and token auth; the Kubernetes apiextensions-apiserver with etcd), runs fmt, clippy and the
# whole test suite against them, and stops the services again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '\n== %s\n' "$*"; }

# --- packages --------------------------------------------------------------------------------
. scripts/lib.sh
ensure_build_tools
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

# --- static checks ---------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets --features service-tests -- -D warnings"
cargo clippy --all-targets --locked --features service-tests -- -D warnings

# --- services --------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/trustkeeper-test.XXXXXX")
TB=tests/support/testbed.sh
KT=tests/support/kube-testbed.sh
cleanup() {
  "$TB" down "$WORK/tb" >/dev/null 2>&1 || true
  "$TB" down "$WORK/tb-token" >/dev/null 2>&1 || true
  "$KT" down "$WORK/kube" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The referee tools (cosign, notation, oras, promtool, act, actionlint) into a cache that survives
# between runs on this machine; in the background while the testbeds come up.
REFEREES=${XDG_CACHE_HOME:-$HOME/.cache}/trustkeeper/referees
tests/support/referees.sh install "$REFEREES" >"$WORK/referees.log" 2>&1 &
referees_pid=$!

log "starting the notary + registry testbeds"
"$TB" up "$WORK/tb" >"$WORK/tb-up.log" 2>&1 || { cat "$WORK/tb-up.log"; exit 1; }
"$TB" up "$WORK/tb-token" --token >"$WORK/tb-token-up.log" 2>&1 || { cat "$WORK/tb-token-up.log"; exit 1; }
log "starting the Kubernetes API server (first run builds it from Debian's sources, ~3 min)"
"$KT" up "$WORK/kube" >"$WORK/kube-up.log" 2>&1 || { tail -50 "$WORK/kube-up.log"; exit 1; }

log "referee tools ($REFEREES)"
wait "$referees_pid" || { tail -30 "$WORK/referees.log"; echo "installing the referee tools failed"; exit 1; }
. "$REFEREES/env"
export TRUSTKEEPER_REFEREES="$REFEREES"

log "packaging checks: helm lint, rendered manifests against the Kubernetes schemas, yamllint, hadolint"
"$KT" tools "$WORK/tools" >"$WORK/tools.log" 2>&1 || { tail -30 "$WORK/tools.log"; exit 1; }
(
  . "$WORK/tools/tools.env"
  helm lint --strict charts/trustkeeper
  helm lint --strict charts/trustkeeper -f charts/trustkeeper/ci/all-options-values.yaml
  # Cluster-wide, and namespaced with every option on. ServiceMonitor is validated apart: the
  # offline validator has no schema for it.
  helm template tk charts/trustkeeper -n trustkeeper >"$WORK/chart-default.yaml"
  helm template tk charts/trustkeeper -n trustkeeper --set 'watchNamespaces={team-a,team-b}' \
    --set webhook.tokenSecretName=hook --set extraCaBundle.configMapName=ca >"$WORK/chart-namespaced.yaml"
  # Every option on (ci/all-options-values.yaml) but the two Prometheus Operator kinds.
  helm template tk charts/trustkeeper -n trustkeeper -f charts/trustkeeper/ci/all-options-values.yaml \
    --set metrics.serviceMonitor.enabled=false --set metrics.prometheusRule.enabled=false >"$WORK/chart-all.yaml"
  charts=("$WORK/chart-default.yaml" "$WORK/chart-namespaced.yaml" "$WORK/chart-all.yaml")
  kubernetes-validate --strict -k 1.35 "${charts[@]}" | grep -v '^INFO' || true
  kubernetes-validate --strict -k 1.35 "${charts[@]}" >/dev/null
  all=(-n trustkeeper -f charts/trustkeeper/ci/all-options-values.yaml)
  helm template tk charts/trustkeeper "${all[@]}" --show-only templates/servicemonitor.yaml >"$WORK/servicemonitor.yaml"
  grep -q '^apiVersion: monitoring.coreos.com/v1$' "$WORK/servicemonitor.yaml"
  grep -q '^kind: ServiceMonitor$' "$WORK/servicemonitor.yaml"
  helm template tk charts/trustkeeper "${all[@]}" --show-only templates/prometheusrule.yaml >"$WORK/prometheusrule.yaml"
  grep -q '^apiVersion: monitoring.coreos.com/v1$' "$WORK/prometheusrule.yaml"
  grep -q '^kind: PrometheusRule$' "$WORK/prometheusrule.yaml"
  # Its spec (the last key) is a Prometheus rules file; its unit tests are in tests/chart_monitoring.rs.
  sed -n '/^spec:$/,$p' "$WORK/prometheusrule.yaml" | sed '1d; s/^  //' >"$WORK/rules.yaml"
  "$PROMTOOL" check rules "$WORK/rules.yaml"
  yamllint -c .yamllint.yaml charts/trustkeeper/values.yaml charts/trustkeeper/Chart.yaml examples/ crds/ \
    "${charts[@]}" "$WORK/servicemonitor.yaml" "$WORK/prometheusrule.yaml" charts/trustkeeper/ci/ tests/promtool/
  hadolint Dockerfile
  echo "packaging checks passed"
)

export TRUSTKEEPER_TESTBED="$WORK/tb"
export TRUSTKEEPER_TESTBED_TOKEN="$WORK/tb-token"
export TRUSTKEEPER_KUBE_TESTBED="$WORK/kube"
export TRUSTKEEPER_HELM="$WORK/tools/bin/helm"

# --- tests -----------------------------------------------------------------------------------
log "cargo test"
# A failing test must not end the script here (set -e): the summary below still prints.
set +e
cargo test --locked --features service-tests 2>&1 | tee "$WORK/test.log"
status=${PIPESTATUS[0]}
set -e

# --- fuzzing ------------------------------------------------------------------------------------
# Every fuzz target (fuzz/) for a short bounded time (FUZZ_SECONDS each, 20 by default; 0 skips).
fuzz_status=0
if [ "$status" = 0 ] && [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  log "fuzzing: each target for ${FUZZ_SECONDS:-20} s"
  scripts/fuzz.sh "${FUZZ_SECONDS:-20}" 2>&1 | tee "$WORK/fuzz.log" || fuzz_status=1
fi

# --- benchmark ---------------------------------------------------------------------------------
# Side by side with the notary Go client on the same testbed (release build); prints ratios.
# A benchmark, not a test: its numbers never fail the run. BENCH=0 skips it.
if [ "$status" = 0 ] && [ "${BENCH:-1}" != 0 ]; then
  log "benchmark: trustkeeper vs the notary Go client"
  # 9 iterations (~12 s each): the median of 5 moved by 0.3x between runs at the witness row.
  BENCH_ITERATIONS=${BENCH_ITERATIONS:-9} cargo bench --locked --bench sign_vs_notary 2>&1 | grep -v '^ *Compiling' || true
  log "benchmark: one trustkeeper sign in several formats vs the notary Go client and cosign"
  FORMATS_BENCH_ITERATIONS=${FORMATS_BENCH_ITERATIONS:-3} cargo bench --locked --bench formats_vs_peers 2>&1 | grep -v '^ *Compiling' | tee "$WORK/formats.log" || true
  log "benchmark: the operator with the real engine, ${TRUSTKEEPER_SCALE_N:-1000} SignedImages x ${TRUSTKEEPER_SCALE_TAGS:-10} tags"
  # Its figures are informational; its correctness checks (every SignedImage Ready with its tags,
  # the Go client agreeing) fail the run.
  if ! cargo bench --locked --bench operator_scale 2>&1 | tee "$WORK/scale.log" | grep -v '^ *Compiling'; then
    echo "operator scale bench FAILED"
    status=1
  fi
  # A check that found nothing new must write no status (issue #20): a gate, not a figure.
  if grep -q 'status writes (target 0: MISSED)' "$WORK/scale.log"; then
    echo "operator scale bench: the quiet cycle wrote statuses"
    status=1
  fi
fi

# --- container image ---------------------------------------------------------------------------
# Built without a daemon (buildah, vfs, chroot) on a locally assembled base; must run as non-root.
if [ "$status" = 0 ]; then
  log "container image (buildah)"
  bash scripts/image.sh || status=1
fi
passed=$(grep -Eo '^test result: .*' "$WORK/test.log" | awk '{p+=$4; f+=$6} END {print p+0, f+0}')
log "summary"
# Counts printed by the reliability suite (faults survived, bad inputs tried, ...).
grep -ho 'reliability: .*' "$WORK/test.log" || true
grep -h '^fuzz: ' "$WORK/fuzz.log" 2>/dev/null || true
grep -hE '^(nothing-new|peak RSS)' "$WORK/scale.log" 2>/dev/null || true
grep -h '^formats: ' "$WORK/formats.log" 2>/dev/null || true
set -- $passed
echo "$1 passed, $2 failed"
[ "$status" = 0 ] || exit "$status"
exit "$fuzz_status"
