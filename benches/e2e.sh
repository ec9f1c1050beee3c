#!/usr/bin/env bash
# End-to-end benchmark: `once` against a listing served by the simulator on loopback (stdout to
# /dev/null), with every event new (fresh store) and then with every event known, next to a
# bare download of the same listing (curl to /dev/null: the floor). For every size and history
# (how densely the sessions crowd in time) it prints wall time and peak RSS (/usr/bin/time) of
# each, the ratios to the floor, and the 1h/30d wall ratio. Each figure is the median of RUNS
# rounds; a round runs curl, new and known back to back, so they share the machine's load.
#
#   benches/e2e.sh [--sessions N[,N...]] [--history H[,H...]] [--runs R] [--serde-floor] [--bin PATH]
#     defaults: --sessions 1000000 --history 1h,1d,30d,3650d --runs 3
#     --serde-floor  also time benches/floor.rs (download, then serde_json into typed records)
#     --bin PATH     measure another build of the agent (e.g. an older release) instead
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=1000000 HISTORIES=1h,1d,30d,3650d RUNS=3 SERDE= BIN=
while [ $# -gt 0 ]; do
  case $1 in
    --sessions) SIZES=$2; shift 2 ;;
    --history) HISTORIES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --serde-floor) SERDE=1; shift ;;
    --bin) BIN=$2; shift 2 ;;
    *) echo "usage: $0 [--sessions N[,N...]] [--history H[,H...]] [--runs R] [--serde-floor] [--bin PATH]" >&2; exit 2 ;;
  esac
done
if [ -z "$BIN" ] || [ -n "$SERDE" ]; then
  cargo build --release --quiet --bin senhasegura-forwarder --example floor
fi
BIN=${BIN:-target/release/senhasegura-forwarder}
FLOOR=target/release/examples/floor
WORK=$(mktemp -d)
SIM_PID=
trap '[ -n "$SIM_PID" ] && kill $SIM_PID 2>/dev/null; rm -rf "$WORK"' EXIT
. benches/sim.sh

# timed NAME CMD...: run once; append "wall kib" to $WORK/NAME.
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > /dev/null 2> "$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  cat "$WORK/time" >> "$WORK/$name"
}
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
walls() { cut -d' ' -f1 "$WORK/$1" | tr '\n' ' '; }
wall() { cut -d' ' -f1 "$WORK/$1" | median; }
rss() { cut -d' ' -f2 "$WORK/$1" | sort -n | tail -1 | awk '{printf "%.1f", $1/1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }

declare -A NEW_WALL
printf '%d rounds each; wall = median s (all rounds), RSS = max MiB\n' "$RUNS"
printf '%-9s %-6s %6s | %-22s | %-30s | %-30s | %s\n' sessions hist MB "curl wall" "once all-new wall / RSS" \
  "once all-known wall / RSS" "new/curl known/curl"
for N in ${SIZES//,/ }; do
  for H in ${HISTORIES//,/ }; do
    start_simulator "$WORK" "$N" "$H"
    write_config "$WORK/config.toml" "$WORK/state"
    TOKEN=$(curl -s -d grant_type=client_credentials -d client_id=forwarder -d client_secret=simulator-secret \
      "$SIM_URL/iso/oauth2/token" | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
    rm -f "$WORK"/curl "$WORK"/new "$WORK"/known "$WORK"/serde
    for _ in $(seq "$RUNS"); do
      timed curl curl -s -H "Authorization: Bearer $TOKEN" -o /dev/null "$SIM_URL/api/session/remotesessions"
      [ -n "$SERDE" ] && timed serde "$FLOOR" "$SIM_URL" typed
      rm -rf "$WORK/state"
      timed new "$BIN" once -c "$WORK/config.toml"
      grep -q "new=$N " "$WORK/err" || { echo "expected new=$N:" >&2; cat "$WORK/err" >&2; exit 1; }
      timed known "$BIN" once -c "$WORK/config.toml"
      grep -q "known=$N " "$WORK/err" || { echo "expected known=$N:" >&2; cat "$WORK/err" >&2; exit 1; }
    done
    MB=$(curl -s -H "Authorization: Bearer $TOKEN" -o /dev/null -w '%{size_download}' "$SIM_URL/api/session/remotesessions" \
      | awk '{printf "%.0f", $1/1e6}')
    printf '%-9s %-6s %6s | %-22s | %-30s | %-30s | %s %s\n' "$N" "$H" "$MB" "$(wall curl) ($(walls curl))" \
      "$(wall new) ($(walls new)) / $(rss new)" "$(wall known) ($(walls known)) / $(rss known)" \
      "$(ratio "$(wall new)" "$(wall curl)")" "$(ratio "$(wall known)" "$(wall curl)")"
    [ -n "$SERDE" ] && printf '  serde_json typed floor: %s s (%s) / %s MiB\n' "$(wall serde)" "$(walls serde)" "$(rss serde)"
    NEW_WALL[$N/$H]=$(wall new)
    kill $SIM_PID; wait $SIM_PID 2>/dev/null || true; SIM_PID=
    rm -rf "$WORK/state"
  done
  if [ -n "${NEW_WALL[$N/1h]:-}" ] && [ -n "${NEW_WALL[$N/30d]:-}" ]; then
    echo "$N sessions: all-new wall 1h/30d = $(ratio "${NEW_WALL[$N/1h]}" "${NEW_WALL[$N/30d]}")"
  fi
done
