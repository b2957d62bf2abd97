# Shared by the scripts in this folder (sourced, not run).

# Installs Debian packages, as root or through sudo.
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# What building and the testbed need: curl, openssl, python3, a C compiler (aws-lc), and cargo.
ensure_build_tools() {
  local need=()
  # script (bsdutils): the terminal-prompt tests run trustkeeper on a pty through it.
  for bin in curl openssl python3 gcc script; do command -v "$bin" >/dev/null || need+=("$bin"); done
  if [ ${#need[@]} -gt 0 ]; then
    printf '\n== installing %s\n' "${need[*]}"
    need=("${need[@]/gcc/build-essential}")
    apt_install "${need[@]/script/bsdutils}"
  fi
  command -v cargo >/dev/null || { echo "cargo is required: install Rust with rustup (https://rustup.rs)"; exit 1; }
}
