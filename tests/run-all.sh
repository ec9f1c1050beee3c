#!/usr/bin/env bash
# The project's whole test suite, from a fresh machine of the `rust` kind. Idempotent: it
# installs only what is missing and reuses what an earlier run built.
#
#   bash tests/run-all.sh
#
# Needs: the Rust toolchain (on the machine). Installs, when missing: rsyslog and
# rsyslog-gnutls from Debian (the syslog sink tests start private instances on loopback),
# prometheus from Debian (a private server scrapes the agent; promtool checks the rules), and
# the tansu Kafka-protocol broker from crates.io, built once (about 18 minutes on 2 cores) into
# ~/.cache/senhasegura-forwarder/ and reused by every later run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

echo "== test dependencies"
if [ ! -x /usr/sbin/rsyslogd ] || ! dpkg -s rsyslog-gnutls >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsyslog rsyslog-gnutls
fi
/usr/sbin/rsyslogd -v | sed -n 1p

# --- Prometheus (issue 11): Debian's prometheus package brings prometheus and promtool; the
# metrics tests start a private server on loopback and run promtool on the scrape, the alert
# rules and their unit tests. About 19 MB to download, 12 s to install, no recommends.
if [ ! -x /usr/bin/prometheus ] || [ ! -x /usr/bin/promtool ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
/usr/bin/prometheus --version 2>&1 | sed -n 1p
# --- end Prometheus

TANSU_VERSION=0.6.0
TANSU_ROOT="$HOME/.cache/senhasegura-forwarder/tansu-$TANSU_VERSION"
if [ ! -x "$TANSU_ROOT/bin/tansu" ]; then
  echo "building tansu $TANSU_VERSION once into $TANSU_ROOT (about 18 minutes on 2 cores)"
  cargo install "tansu@$TANSU_VERSION" --features dynostore --locked --root "$TANSU_ROOT"
fi
export TANSU_BIN="$TANSU_ROOT/bin/tansu"
"$TANSU_BIN" --version

# --- packaging tools (issue 10): the package tests build the .deb and .rpm and check them.
# lintian, rpmlint, rpm and systemd (systemd-analyze) from Debian; cargo-deb and
# cargo-generate-rpm from crates.io, built once into ~/.cache/senhasegura-forwarder/tools and
# reused (about 3 minutes on 2 cores the first time).
missing=""
for tool in lintian rpmlint rpm systemd-analyze logrotate; do command -v "$tool" >/dev/null || missing=1; done
if [ -n "$missing" ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian rpmlint rpm systemd man-db logrotate
fi
TOOLS_ROOT="$HOME/.cache/senhasegura-forwarder/tools"
[ -x "$TOOLS_ROOT/bin/cargo-deb" ] || cargo install --locked cargo-deb@3.8.0 --root "$TOOLS_ROOT"
[ -x "$TOOLS_ROOT/bin/cargo-generate-rpm" ] || cargo install --locked cargo-generate-rpm@0.21.1 --root "$TOOLS_ROOT"
export PATH="$TOOLS_ROOT/bin:$PATH"
echo "== packages (release build, reused by the package tests)"
bash packaging/build.sh
# --- end of packaging tools

echo "== format, lints and API docs"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# Broken or private intra-doc links fail here, not in a reader's browser.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

echo "== tests"
mkdir -p target
cargo test --all-targets 2>&1 | tee target/test-output.txt
# Fail loudly if the integration binary did not run.
grep -q "test result: ok" target/test-output.txt
passed=$(grep -Eo '[0-9]+ passed' target/test-output.txt | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s += $1} END {print s + 0}')
echo "total: $passed passed, $failed failed"
