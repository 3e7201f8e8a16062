"""Markdown summary of loadtest/scale.sh's cells: medians over rounds, and
every ratio taken within one round before its median is taken.

    python3 loadtest/scale_summary.py OUT_DIR/cells.jsonl
"""

import json
import os
import statistics
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def main():
    cells = load(sys.argv[1])
    ceiling_path = os.path.join(os.path.dirname(sys.argv[1]), "ceiling.jsonl")
    ceiling = load(ceiling_path) if os.path.exists(ceiling_path) else []
    by = defaultdict(dict)  # (label, model, protocol, c) -> round -> report
    for cell in cells:
        key = (cell["label"], cell["model"], cell["protocol"], cell["c"])
        by[key][cell["round"]] = cell["report"]
    rounds = sorted({c["round"] for c in cells})
    errors = sum(sum(c["report"]["errors"].values()) for c in cells)
    print(f"{len(cells)} cells over {len(rounds)} rounds; failed requests in all cells: {errors}\n")

    def stat(key, field):
        out = {}
        for r, report in by.get(key, {}).items():
            out[r] = report["throughput"] if field == "rps" else report["latency"][field]
        return out

    def ratio(a, b):
        return med([a[r] / b[r] for r in a if r in b and b[r]])

    raw_p50 = defaultdict(list)
    if ceiling:
        print("## Raw ONNX Runtime (examples/ort_ceiling, batch 1)\n")
        print("| model | threads | calls/s | p50 µs |\n|---|---|---|---|")
        groups = defaultdict(list)
        for row in ceiling:
            groups[(row["model"], row["threads"])].append(row)
        for (model, threads), rows in sorted(groups.items()):
            p50 = med([r["p50_us"] for r in rows])
            if threads == 1:
                raw_p50[model].append(p50)
            print(f"| {model} | {threads} | {fmt(med([r['calls_per_s'] for r in rows]))} | {fmt(p50, 1)} |")
        print()

    c1 = sorted(k for k in by if k[0] == "c1")
    if c1:
        print("## Concurrency 1\n")
        print("| model | protocol | p50 µs | p99 µs | p50 − raw ORT p50 µs |\n|---|---|---|---|---|")
        for key in c1:
            p50 = med(stat(key, "p50_us").values())
            raw = med(raw_p50.get(key[1], []))
            over = p50 - raw if p50 is not None and raw is not None else None
            print(f"| {key[1]} | {key[2]} | {fmt(p50)} | {fmt(med(stat(key, 'p99_us').values()))} | {fmt(over)} |")
        print()

    proto = sorted({k[3] for k in by if k[0] == "proto"})
    if proto:
        print("## Protocols (fraud)\n")
        print("| c | client | req/s | p50 µs | p99 µs | ÷ REST binary |\n|---|---|---|---|---|---|")
        for c in proto:
            base = stat(("proto", "fraud", "rest-binary", c), "rps")
            keys = [("proto", "fraud", p, c) for p in ("rest-json", "rest-binary")]
            keys += sorted((k for k in by if k[0].startswith("grpc-conns") and k[3] == c),
                           key=lambda k: int(k[0].rsplit("-", 1)[1]))
            for key in keys:
                name = key[2] if key[0] == "proto" else f"grpc, {key[0].rsplit('-', 1)[1]} connections"
                rps = stat(key, "rps")
                print(f"| {c} | {name} | {fmt(med(rps.values()))} | {fmt(med(stat(key, 'p50_us').values()))} "
                      f"| {fmt(med(stat(key, 'p99_us').values()))} | {fmt(ratio(rps, base), 2)} |")
        print()

    # The readout cells compare two endpoints of one server (fraud-plain off,
    # fraud-exp on); the others one model on two servers.
    pairs = {"readout": ("fraud-plain", "fraud-exp")}
    for what, label in (("Inference table", "table"), ("Dynamic batching", "batching"),
                        ("Experiment readout + guardrails", "readout"),
                        ("Run to completion on the caller", "caller")):
        keys = sorted({(k[1], k[2], k[3]) for k in by if k[0] == label + "-on"})
        if not keys:
            continue
        print(f"## {what}: off vs on\n")
        print("| model | protocol | c | req/s off | req/s on | on ÷ off | p50 µs off | p50 µs on | p99 µs off | p99 µs on |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for model, protocol, c in keys:
            off_model = pairs[label][0] if label in pairs else model
            off = (f"{label}-off", off_model, protocol, c)
            on = (f"{label}-on", model, protocol, c)
            print(f"| {model} | {protocol} | {c} | {fmt(med(stat(off, 'rps').values()))} "
                  f"| {fmt(med(stat(on, 'rps').values()))} | {fmt(ratio(stat(on, 'rps'), stat(off, 'rps')), 3)} "
                  f"| {fmt(med(stat(off, 'p50_us').values()))} | {fmt(med(stat(on, 'p50_us').values()))} "
                  f"| {fmt(med(stat(off, 'p99_us').values()))} | {fmt(med(stat(on, 'p99_us').values()))} |")
        print()


if __name__ == "__main__":
    main()
