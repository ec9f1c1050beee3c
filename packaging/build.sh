#!/usr/bin/env bash
# Builds the Debian and RPM packages into target/packages/:
#
#   bash packaging/build.sh
#
# Needs cargo-deb and cargo-generate-rpm on PATH or in ~/.cache/senhasegura-forwarder/tools/bin
# (tests/run-all.sh installs them there). A release build, then the man page and shell
# completions generated from the CLI definition (src/assets.rs), the third-party licence texts
# (packaging/licenses.rs), then both packages.
# Idempotent: a second run rebuilds nothing that did not change.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cache/senhasegura-forwarder/tools/bin:$HOME/.cargo/bin:$PATH"

cargo build --release --locked --bin senhasegura-forwarder

assets=target/package-assets
rm -rf "$assets"
mkdir -p "$assets" target/packages
target/release/senhasegura-forwarder package-assets "$assets"
gzip -9n "$assets"/*.1
# The licence texts of the crates in the binary and of the Rust standard library
# (packaging/licenses.rs says which and how). Built in release like the binary, so that it
# reuses the release build's dependencies.
host=$(rustc -vV | sed -n 's/^host: //p')
std_notices="$(rustc --print sysroot)/share/doc/rust/COPYRIGHT-library.html"
if [ ! -f "$std_notices" ]; then
  echo "build.sh: $std_notices not found: the package lacks the Rust standard library's notices" >&2
  std_notices=
fi
cargo tree --locked -e normal,no-proc-macro --target "$host" --prefix none -f '{p}' > "$assets/crates.txt"
cargo metadata --format-version 1 --locked --filter-platform "$host" \
  | cargo run --release --locked --quiet --example third_party_licenses -- \
    "$assets/crates.txt" "$assets/THIRD-PARTY-LICENSES" ${std_notices:+"$std_notices"}
gzip -9n "$assets/THIRD-PARTY-LICENSES"
# Packages ship a stripped binary (the release profile keeps line tables for backtraces).
strip --strip-unneeded -o "$assets/senhasegura-forwarder" target/release/senhasegura-forwarder

rm -f target/packages/*.deb target/packages/*.rpm
cargo deb --no-build --no-strip --output target/packages/
cargo generate-rpm --output target/packages/
ls -l target/packages/
