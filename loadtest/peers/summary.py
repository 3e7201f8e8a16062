"""The Markdown tables loadtest/peers.sh prints: what each server ran, which
outputs were checked, and one row per (model, protocol, level, server) with
medians over the rounds and the throughput ratio to Podium taken within each
round before its median is taken.
"""

import statistics


def summary(s, results, ran, checked):
    """Prints the tables. `s`: the run's settings (run.py's settings()); `results`: one dict per
    cell and round; `ran`: server -> what it ran; `checked`: (server, model) -> output names."""
    med = statistics.median
    if s["server_cpus"] or s["loadtest_cpus"]:
        pin = f"servers pinned to CPUs {s['server_cpus'] or 'all'}, podium-loadtest to {s['loadtest_cpus'] or 'all'}"
    else:
        pin = "servers and podium-loadtest unpinned, sharing every core"
    print(f"Machine: {s['cores']} vCPUs ({s['cpu_model']}); load average at start {s['loadavg']}. "
          f"{s['rounds']} round(s), {s['duration']} measured + {s['warmup']} warm-up per cell, closed loop, "
          f"one server at a time, {pin}. Same input file for every server (`--input`, batch 1). "
          f"Medians across rounds; each ratio is taken within its round, then the median.\n")
    print("| server | what it ran |\n|---|---|")
    for name in s["servers"]:
        print(f"| {name} | {ran.get(name, '?')} |")
    print()
    if checked:
        which = "; ".join(f"{server} {m} ({', '.join(n)})" for (server, m), n in sorted(checked.items()))
        print(f"Outputs checked equal to Podium's before measuring (same input, "
              f"|a − b| ≤ {s['atol']:g} + {s['rtol']:g}·|b|): {which}.\n")
    print("| model | server | protocol | c | req/s | p50 µs | p99 µs | errors | server cores | req/s ÷ Podium |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cells = {}  # (server, model, protocol, c) -> {round: result}
    for r in results:
        cells.setdefault((r["server"], r["model"], r["protocol"], r["c"]), {})[r["round"]] = r
    for m in s["models"]:
        for protocol in s["protocols"]:
            for c in s["levels"]:
                base = cells.get(("podium", m, protocol, c), {})
                for name in s["servers"]:
                    rounds = cells.get((name, m, protocol, c), {})
                    if not rounds:
                        continue
                    rows = list(rounds.values())
                    ratios = [r["rps"] / base[n]["rps"] for n, r in rounds.items() if n in base and base[n]["rps"]]
                    ratio = f"{med(ratios):.3f}" if ratios else "–"
                    print(f"| {m} | {name} | {protocol} | {c} | {med(r['rps'] for r in rows):,.0f} | "
                          f"{med(r['p50'] for r in rows):,.0f} | {med(r['p99'] for r in rows):,.0f} | "
                          f"{sum(r['errors'] for r in rows)} | {med(r['server_cores'] for r in rows):.2f} | {ratio} |")
    print()
