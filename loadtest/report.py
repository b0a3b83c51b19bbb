"""Turns the wrk runs of loadtest/run.sh into a markdown table and an SVG latency plot.

Usage: report.py WORK_DIR REPORT_PREFIX DURATION CONNECTIONS PROFILE SCENARIO...
Reads WORK_DIR/SCENARIO-{outpost,nginx}.wrk (each ends with report.lua's OUTPOST_JSON
line) and writes REPORT_PREFIX.md and REPORT_PREFIX.svg. Standard library only.
"""

import json
import math
import subprocess
import sys

work, prefix, duration, connections, profile = sys.argv[1:6]
scenarios = sys.argv[6:]
SERVERS = ("outpost", "nginx")
COLOURS = {"outpost": "#d9480f", "nginx": "#1971c2"}


def load(name):
    text = open(f"{work}/{name}.wrk").read()
    line = next(l for l in text.splitlines() if l.startswith("OUTPOST_JSON "))
    run = json.loads(line[len("OUTPOST_JSON "):])
    run["rps"] = run["requests"] / (run["duration_us"] / 1e6)
    run["ms"] = {p: us / 1000.0 for p, us in run["percentiles"]}
    run["error_count"] = sum(run["errors"].values())
    # The server's CPU over the measured window (run.sh's `TICKS CLK_TCK`), per request.
    ticks, hz = (int(x) for x in open(f"{work}/{name}.cpu").read().split())
    run["us_per_req"] = ticks * 1e6 / hz / max(run["requests"], 1)
    return run


runs = {(s, server): load(f"{s}-{server}") for s in scenarios for server in SERVERS}

cpu = subprocess.run(
    ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
    capture_output=True,
    text=True,
).stdout.strip()
name = prefix.rsplit("/", 1)[-1]
lines = [
    f"# Outpost load test, {name}",
    "",
    f"wrk -t1 -c{connections} -d{duration} per run (c1000: 1,000 connections); node "
    f"({profile} build, 1 worker thread) and nginx (1 worker) on CPU 0, wrk and the origin "
    f"on CPU 1. CPU: {cpu or 'unknown'}. Plot: [{name}.svg]({name}.svg). `µs/req` is the "
    "server's user + system CPU over the measured run divided by completed requests "
    "(`pass` includes the origin's); the `ceiling` row's server is a bare pingora app.",
    "",
    "| scenario | server | requests/s | µs/req | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | req/s vs nginx | p99 vs nginx |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for s in scenarios:
    o, n = runs[(s, "outpost")], runs[(s, "nginx")]
    for server, run in (("outpost", o), ("nginx", n)):
        ratio = run["rps"] / n["rps"]
        p99 = run["ms"][99] / max(n["ms"][99], 1e-9)
        bold = "**" if server == "outpost" else ""
        lines.append(
            f"| {s} | {server} | {run['rps']:,.0f} | {run['us_per_req']:.1f} "
            f"| {run['ms'][50]:.2f} | {run['ms'][90]:.2f} "
            f"| {run['ms'][99]:.2f} | {run['ms'][99.9]:.2f} | {run['error_count']} "
            f"| {bold}{ratio:.2f}x{bold} | {p99:.2f}x |"
        )
text = "\n".join(lines) + "\n"
open(prefix + ".md", "w").write(text)

# One chart per scenario: latency (log scale) against percentile, spaced HdrHistogram-style
# so the tail gets room: x = log10(1 / (1 - p)).
W, H, PAD, GAP = 760, 220, 56, 30
total_h = len(scenarios) * (H + GAP) + GAP
svg = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" '
    f'font-family="sans-serif" font-size="11">',
    f'<rect width="{W}" height="{total_h}" fill="white"/>',
]


def xpos(p):
    p = min(p, 99.99)
    return PAD + (W - 2 * PAD) * math.log10(1 / (1 - p / 100)) / 4


for i, s in enumerate(scenarios):
    top = GAP + i * (H + GAP)
    values = [ms for server in SERVERS for ms in runs[(s, server)]["ms"].values() if ms > 0]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    if hi <= lo:
        hi = lo * 10

    def ypos(ms):
        ms = max(ms, lo)
        return top + H - (H - 20) * (math.log10(ms / lo) / math.log10(hi / lo))

    svg.append(f'<text x="{PAD}" y="{top + 4}" font-weight="bold">{s}: latency by percentile (ms, log scale)</text>')
    svg.append(f'<rect x="{PAD}" y="{top + 10}" width="{W - 2 * PAD}" height="{H - 10}" fill="none" stroke="#ccc"/>')
    decade = lo
    while decade <= hi * 1.001:
        y = ypos(decade)
        svg.append(f'<line x1="{PAD}" x2="{W - PAD}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        svg.append(f'<text x="{PAD - 6}" y="{y + 4:.1f}" text-anchor="end">{decade:g}</text>')
        decade *= 10
    for p in (0, 90, 99, 99.9, 99.99):
        x = xpos(p)
        svg.append(f'<text x="{x:.1f}" y="{top + H + 14}" text-anchor="middle">p{p:g}</text>')
    for j, server in enumerate(SERVERS):
        run = runs[(s, server)]
        points = " ".join(f"{xpos(p):.1f},{ypos(ms):.1f}" for p, ms in sorted(run["ms"].items()) if p < 100)
        svg.append(f'<polyline points="{points}" fill="none" stroke="{COLOURS[server]}" stroke-width="2"/>')
        svg.append(
            f'<text x="{W - PAD - 260}" y="{top + 26 + 14 * j}" fill="{COLOURS[server]}">'
            f"{server}: {run['rps']:,.0f} req/s, {run['us_per_req']:.1f} µs/req</text>"
        )
svg.append("</svg>")
open(prefix + ".svg", "w").write("\n".join(svg) + "\n")

print(text)
print(f"report: {prefix}.md, plot: {prefix}.svg")
failed = [f"{s}-{server}" for (s, server), run in runs.items() if run["error_count"]]
if failed:
    sys.exit(f"loadtest: errors in {', '.join(failed)}")
