#!/usr/bin/env bash
# The project's whole test suite, from a fresh machine of the `rust` kind. Idempotent: it
# installs only what is missing and reuses what an earlier run built.
#
#   bash tests/run-all.sh
#
# Needs: the Rust toolchain (on the machine). Installs: nothing else yet (the syslog and
# Kafka sink tests will add rsyslog and a Kafka-protocol broker here).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never

echo "== format and lints"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings

echo "== tests"
mkdir -p target
cargo test --all-targets 2>&1 | tee target/test-output.txt
# Fail loudly if the integration binary did not run.
grep -q "test result: ok" target/test-output.txt
