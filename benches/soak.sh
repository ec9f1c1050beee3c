#!/usr/bin/env bash
# Soak benchmark: `run` over many cycles of a listing that grows between polls (the simulator's
# --grow: K running sessions end and K new ones start per listing), stdout to /dev/null. Prints,
# at cycles 10, 100 and the last, the agent's resident size at two fixed points of the cycle, as
# the agent logs them: at the end of the poll, and idle after it gave its freed memory back (what
# a service shows between polls); then its RSS now, at whatever point of the next poll the
# script looks (with its anonymous and file-backed parts, from /proc/PID/status); then the
# store's keys and size on disk, then the
# time of `state prune` on a store of PRUNE_KEYS keys (30 days of history): removing the oldest
# hour, and removing everything. `--every E` adds the RSS at every E-th cycle (the shape of the
# curve, not only its ends). Then a new `run` on the same store and listing, at its cycles 10 and
# 100: what the data itself costs, against what came with the long process's age. The agent
# inherits the environment (e.g. MALLOC_ARENA_MAX=2, where `run` keeps one) and, as the packaged
# service runs it, the GLIBC_TUNABLES of packaging/systemd/senhasegura-forwarder.service, unless
# GLIBC_TUNABLES is set already or --bare is given (then with glibc's defaults: the binary would
# start itself again with the unit's value, which SENHASEGURA_FORWARDER_ALLOCATOR_SET=1 stops).
#
#   benches/soak.sh [--cycles C] [--sessions N] [--grow K] [--prune-keys M] [--every E] [--bare]
#     defaults: --cycles 1000 --sessions 100000 --grow 50 --prune-keys 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES=1000 N=100000 GROW=50 PRUNE_KEYS=1000000 EVERY=0 BARE=
while [ $# -gt 0 ]; do
  case $1 in
    --cycles) CYCLES=$2; shift 2 ;;
    --sessions) N=$2; shift 2 ;;
    --grow) GROW=$2; shift 2 ;;
    --prune-keys) PRUNE_KEYS=$2; shift 2 ;;
    --every) EVERY=$2; shift 2 ;;
    --bare) BARE=1; shift ;;
    *) echo "usage: $0 [--cycles C] [--sessions N] [--grow K] [--prune-keys M] [--every E] [--bare]" >&2; exit 2 ;;
  esac
done
cargo build --release --quiet --bin senhasegura-forwarder
BIN=target/release/senhasegura-forwarder
if [ -n "$BARE" ]; then
  export SENHASEGURA_FORWARDER_ALLOCATOR_SET=1
elif [ -z "${GLIBC_TUNABLES+set}" ]; then
  GLIBC_TUNABLES=$(sed -n 's/^Environment=GLIBC_TUNABLES=//p' packaging/systemd/senhasegura-forwarder.service)
  export GLIBC_TUNABLES
fi
echo "environment: GLIBC_TUNABLES=${GLIBC_TUNABLES:-(unset)} MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-(unset)} SENHASEGURA_FORWARDER_ALLOCATOR_SET=${SENHASEGURA_FORWARDER_ALLOCATOR_SET:-(unset)}"
WORK=$(mktemp -d)
SIM_PID= AGENT=
trap '[ -n "$AGENT" ] && kill $AGENT 2>/dev/null; [ -n "$SIM_PID" ] && kill $SIM_PID 2>/dev/null; rm -rf "$WORK"' EXIT
. benches/sim.sh

rss_mib() { awk -v f="$2" '$1 == f":" {printf "%.1f", $2/1024}' "/proc/$1/status"; }
cycles() { grep -c "Returned free heap memory" "$LOG" || true; }
released_mib() { # the resident size before and after the N-th poll's release, "B → A"
  grep "Returned free heap memory" "$LOG" | sed -n "$1p" |
    awk '{for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
          printf "%.1f → %.1f", v["before_kib"] / 1024, v["after_kib"] / 1024}'
}

start_simulator "$WORK" "$N" 30d --grow "$GROW"
write_config "$WORK/config.toml" "$WORK/state"
sed -i 's/^\[source\]$/[source]\ninterval = "10ms"/' "$WORK/config.toml"
start_agent() { # logging to $1; memory=debug: after each poll, the resident size once its freed
  # memory went back (the idle size a service shows between polls, a fixed point of the cycle)
  LOG=$1
  "$BIN" run -c "$WORK/config.toml" --log-level info,senhasegura_forwarder::memory=debug \
    > /dev/null 2> "$LOG" &
  AGENT=$!
  STARTED=$(date +%s.%N)
}
report() { # at each cycle of $@: the sizes at the poll's end and idle, then RSS now
  for at in "$@"; do
    while [ "$(cycles)" -lt "$at" ]; do
      kill -0 $AGENT 2>/dev/null || { echo "agent exited:" >&2; tail "$LOG" >&2; exit 1; }
      sleep 0.05
    done
    printf 'cycle %5d: end of poll → idle %s MiB; now RSS %s MiB (anonymous %s, files %s; peak so far %s MiB), %.0f s\n' "$at" \
      "$(released_mib "$at")" "$(rss_mib $AGENT VmRSS)" "$(rss_mib $AGENT RssAnon)" "$(rss_mib $AGENT RssFile)" \
      "$(rss_mib $AGENT VmHWM)" "$(echo "$(date +%s.%N) - $STARTED" | bc)"
  done
}
stop_agent() { kill -TERM $AGENT; wait $AGENT || true; AGENT=; }

start_agent "$WORK/agent.err"
echo "run: $N-session listing (30d), growing by $GROW sessions a cycle, $CYCLES cycles"
report $( (echo 10; echo 100; echo "$CYCLES"; if [ "$EVERY" -gt 0 ]; then seq "$EVERY" "$EVERY" "$CYCLES"; fi) |
  awk -v c="$CYCLES" '$1 <= c' | sort -nu)
stop_agent
grep "Poll cycle done.*interrupted=false" "$WORK/agent.err" | tail -1 | grep -o 'new=[0-9]* delivered=[0-9]* known=[0-9]*' | sed 's/^/last cycle: /'
"$BIN" state --state-dir "$WORK/state" stats > "$WORK/stats.json"
KEYS=$(grep '"keys"' "$WORK/stats.json" | grep -o '[0-9]*')
DISK=$(grep '"size_on_disk"' "$WORK/stats.json" | grep -o '[0-9]*')
printf 'store: %d keys, sled size_on_disk %.1f MiB (%.0f bytes a key), directory %s\n' "$KEYS" \
  "$(echo "$DISK / 1048576" | bc -l)" "$(echo "$DISK / $KEYS" | bc -l)" "$(du -sh "$WORK/state" | cut -f1)"
# What a new process needs for the store and the listing the long one ended with: what the long
# run's RSS gained over its own first cycles, that a restart does not give back, came with the
# data (a larger store and listing), not with the process's age.
echo "a new run on the same store and listing (growing on):"
start_agent "$WORK/agent2.err"
report 10 100
stop_agent
kill $SIM_PID; wait $SIM_PID 2>/dev/null || true; SIM_PID=
rm -rf "$WORK/state"

# Prune: a store of PRUNE_KEYS keys, events spread over the 30 days before 2026-01-15 12:00.
start_simulator "$WORK" "$PRUNE_KEYS" 30d
write_config "$WORK/config.toml" "$WORK/state"
"$BIN" once -c "$WORK/config.toml" > /dev/null 2> "$WORK/err"
kill $SIM_PID; wait $SIM_PID 2>/dev/null || true; SIM_PID=
OLDEST=$(date -d "2026-01-15 12:00:00 UTC - 30 days" +%s)
prune_with() { # retention in seconds; prints the removed count and the wall time
  sed -i "s/^retention = .*/retention = \"$1s\"/" "$WORK/config.toml"
  /usr/bin/time -f "%e s, peak RSS %M KiB" -o "$WORK/time" "$BIN" state -c "$WORK/config.toml" prune 2> "$WORK/err"
  printf '%s: %s\n' "$(grep -o 'pruned [0-9]* key(s)' "$WORK/err")" "$(cat "$WORK/time")"
}
echo "state prune of a $PRUNE_KEYS-key store (the whole command: open, prune, flush):"
prune_with $(( $(date +%s) - OLDEST - 3600 ))
prune_with 1
