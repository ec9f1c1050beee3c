"""Group the samples of a `perf record` of the agent by pipeline stage (by symbol name), to
say where a poll's time goes. Usage: perf_stages.py PERF_DATA. Used by benches/profile.sh."""
import re, subprocess, sys, collections

data = sys.argv[1]
out = subprocess.run(["perf","report","-i",data,"--no-children","--stdio","--sort","dso,sym"],capture_output=True,text=True).stdout
rules = [
 ("scanner", r"stream::|memchr"),
 ("record parse (serde_json)", r"serde_json::(read|de)|serde_core::de|from_utf8|model::|utf8|trim_matches|FieldVisitor"),
 ("time conversion / candidate", r"chrono|event::time|Candidate|parse_wall_clock|chrono_tz"),
 ("store (lookup, commit, sled)", r"state::|sled|crossbeam|pagecache"),
 ("ECS/CEF encoding", r"encode::|serde_json::ser|LineSafe|serialize|sha2|hex::|write_rfc3339|IpAddr|fmt::"),
 ("malloc/free", r"malloc|free|_int_|realloc|unlink_chunk|consolidate"),
 ("event build", r"SessionEvent::build|device::|Device"),
 ("filter bookkeeping", r"filter::|pipeline::"),
 ("memcpy", r"memmove|memcpy|memcmp|memset"),
 ("kernel (network, page faults, scheduling)", r"\[k\]"),
 ("download (hyper, reqwest, tokio)", r"hyper|reqwest|h2::|tokio|bytes::|futures|mio"),
]
tot = collections.Counter()
for line in out.splitlines():
    m = re.match(r"\s+([0-9.]+)%\s+(\S+)\s+(.*)", line)
    if not m: continue
    pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
    key = "other"
    for name, rx in rules:
        if re.search(rx, sym):
            key = name; break
    tot[key] += pct
for k, v in tot.most_common():
    print(f"{v:5.1f}%  {k}")
