#!/usr/bin/env bash
# Installs exactly the Debian bookworm packages that building and testing Silo need.
# Idempotent: when every package is already installed it changes nothing and never
# runs `apt-get update`. Must run as root (or with sudo available) on a fresh machine.
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ cmake ninja-build pkg-config make clang clang-format ccache
  # libraries (why each: docs/dependencies.md)
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev libsodium-dev libsqlite3-dev libcli11-dev
  libcurl4-openssl-dev libgtest-dev liboath-dev libqrencode-dev libzstd-dev
  # the common-password list screened at every password change (ASVS 2.1.7)
  john-data
  # black-box tests and benchmarks
  python3 python3-pytest python3-pytest-xdist python3-requests python3-jsonschema python3-aiosmtpd python3-websockets python3-cryptography oathtool openssl
  sqlite3 wrk procps
  # setpriv: the harnesses' servers die with the test process (--pdeathsig)
  util-linux
  # the coordination store of a cluster (leases and fencing terms; issue 21),
  # started by the replication tests on loopback
  etcd-server
  # the syslog receiver of the security-event shipping test (RFC 5425 over TLS)
  rsyslog rsyslog-gnutls
  curl
  # the web console's browser tests (driven by playwright-core from npm, which
  # downloads no browser)
  chromium
)

# The S3-compatible server of the backup tests comes from npm (tests/s3):
# Node.js and npm from Debian unless the machine already has them.
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Vite, svelte-check and playwright-core need Node.js 20.19 or later;
# Debian bookworm's own is 18, which would fail in confusing ways later.
node_version="$(node --version 2>/dev/null || echo v0.0.0)"
IFS=. read -r node_major node_minor _ <<<"${node_version#v}"
if [ "$node_major" -lt 20 ] || { [ "$node_major" -eq 20 ] && [ "$node_minor" -lt 19 ]; }; then
  echo "bootstrap: Node.js >= 20.19 is needed (the console's build and browser tests); found $node_version" >&2
  exit 1
fi

# s3rver at the version package-lock.json pins; nothing when it is there.
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$root/tests/s3/node_modules/.bin/s3rver" ]; then
  echo "bootstrap: installing s3rver (npm ci in tests/s3)"
  (cd "$root/tests/s3" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# The tus client of the resumable-upload tests (tus-js-client, pinned by
# tests/tus/package-lock.json).
if [ ! -f "$root/tests/tus/node_modules/tus-js-client/package.json" ]; then
  echo "bootstrap: installing tus-js-client (npm ci in tests/tus)"
  (cd "$root/tests/tus" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# The console's build tools (console/package-lock.json) and the browser
# tests' playwright-core and axe-core (tests/browser/package-lock.json).
if [ ! -f "$root/console/node_modules/vite/package.json" ]; then
  echo "bootstrap: installing the console's build tools (npm ci in console)"
  (cd "$root/console" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if [ ! -f "$root/tests/browser/node_modules/playwright-core/package.json" ]; then
  echo "bootstrap: installing playwright-core and axe-core (npm ci in tests/browser)"
  (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# The TypeScript client's tools (clients/ts/package-lock.json): openapi-fetch,
# openapi-typescript, TypeScript, and @redocly/cli for the documents' lint.
if [ ! -f "$root/clients/ts/node_modules/@redocly/cli/package.json" ]; then
  echo "bootstrap: installing the client's tools (npm ci in clients/ts)"
  (cd "$root/clients/ts" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
