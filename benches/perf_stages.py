"""Group the samples of a `perf record` of the agent by pipeline stage (by function name), to
say where a poll's time goes. Usage: perf_stages.py PERF_DATA. Used by benches/profile.sh.

Each sample is read from `perf script` with its call chain, inlined functions included (the
compiler inlines the scanner's loop into the filter's, so the outer symbol alone would count
the scanning as filter bookkeeping). The innermost frame that a rule names decides the stage:
a `memcpy` is memcpy wherever it was called from, a `Vec::reserve` belongs to whoever grew the
vector, and a sample in which no frame matches is "other"."""
import collections, re, subprocess, sys

data = sys.argv[1]
rules = [
 ("memcpy", r"memmove|memcpy|memcmp|memset"),
 ("malloc/free", r"malloc|free|_int_|realloc|unlink_chunk|consolidate"),
 ("kernel (network, page faults, scheduling)", r"kernel\.kallsyms"),
 ("scanner", r"stream::|Scanner|memchr"),
 ("record parse (serde_json)", r"serde_json::(read|de)|serde_core::de|from_utf8|model::|FieldVisitor"),
 ("time conversion / candidate", r"chrono|event::time|Candidate|parse_wall_clock|WallClock"),
 ("store (lookup, commit, sled)", r"state::|sled|crossbeam|pagecache"),
 ("ECS/CEF encoding", r"encode::|serde_json::ser|LineSafe|sha2|hex::|write_rfc3339|event_id|EventId"),
 ("event build", r"SessionEvent::build|device::|Device"),
 ("download (hyper, reqwest, tokio)", r"hyper|reqwest|h2::|tokio|bytes::|futures|mio"),
 ("filter bookkeeping", r"filter::|pipeline::"),
]
compiled = [(name, re.compile(rx)) for name, rx in rules]

def stage(frames):
    for f in frames:
        for name, rx in compiled:
            if rx.search(f):
                return name
    return "other"

proc = subprocess.Popen(["perf", "script", "-i", data, "-F", "ip,sym,dso", "--inline"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
tot = collections.Counter()
frames = []
for line in proc.stdout:
    line = line.strip()
    if line:
        frames.append(line)
    elif frames:
        tot[stage(frames)] += 1
        frames = []
if frames:
    tot[stage(frames)] += 1
proc.wait()
n = sum(tot.values()) or 1
for k, v in tot.most_common():
    print(f"{100.0 * v / n:5.1f}%  {k}")
