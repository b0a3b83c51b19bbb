"""Sums up an interleaved A/B of two node binaries (loadtest/ab.sh) from run.sh's reports.

Usage: ab.py LABEL_A LABEL_B REPORT_A1.md REPORT_B1.md [REPORT_A2.md REPORT_B2.md ...]
Reports come in rounds, A's then B's. Per scenario it prints every round's outpost µs/req
for both sides, the means, B's change against A, in how many rounds B was lower, and the
same change measured against each run's own nginx (which cancels the machine drifting
between runs). Standard library only.
"""

import statistics
import sys


def outpost_and_nginx(path):
    """{scenario: (outpost µs/req, nginx µs/req)} from one report's table."""
    rows = {}
    with open(path) as report:
        lines = report.readlines()
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 11 or cells[1] not in ("outpost", "nginx"):
            continue
        try:
            value = float(cells[3])
        except ValueError:
            continue
        rows.setdefault(cells[0], {})[cells[1]] = value
    return {s: (v["outpost"], v["nginx"]) for s, v in rows.items() if len(v) == 2}


def change(before, after):
    return f"{(after / before - 1) * 100:+.1f}%"


def main():
    label_a, label_b, *reports = sys.argv[1:]
    if not reports or len(reports) % 2:
        sys.exit("ab.py: give the reports in pairs, A's then B's, one pair per round")
    rounds = [
        (outpost_and_nginx(reports[i]), outpost_and_nginx(reports[i + 1]))
        for i in range(0, len(reports), 2)
    ]
    scenarios = [s for s in rounds[0][0] if all(s in a and s in b for a, b in rounds)]
    if not scenarios:
        sys.exit("ab.py: no scenario is in every report")
    print(f"A = {label_a}\nB = {label_b}\n")
    print(f"{len(rounds)} rounds; outpost's server CPU µs per request in each round.\n")
    print("| scenario | A | B | A mean | B mean | B vs A | rounds B lower | B vs A, each ÷ its nginx |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for s in scenarios:
        a = [r[0][s] for r in rounds]
        b = [r[1][s] for r in rounds]
        a_mean = statistics.mean(o for o, _ in a)
        b_mean = statistics.mean(o for o, _ in b)
        a_norm = statistics.mean(o / n for o, n in a)
        b_norm = statistics.mean(o / n for o, n in b)
        lower = sum(1 for (ao, _), (bo, _) in zip(a, b) if bo < ao)
        print(
            f"| {s} | {'/'.join(f'{o:.1f}' for o, _ in a)} | {'/'.join(f'{o:.1f}' for o, _ in b)} "
            f"| {a_mean:.1f} | {b_mean:.1f} | {change(a_mean, b_mean)} | {lower} of {len(rounds)} "
            f"| {change(a_norm, b_norm)} |"
        )
    print(
        "\nOn a shared VM, treat a change under ~8%, or one where B is not lower in nearly "
        "every round, as noise (loadtest/README.md)."
    )


main()
