#!/usr/bin/env python3
"""bench/run's report: the tables on stdout, reports/bench.json, and an SVG plot.

Input: the measurements (one JSON object each, from bench/measure.py), the idle-connection
memory per row (bench/idle.py) and the callgrind totals. Medians over rounds, with min-max;
a ratio to nginx is taken round by round (the row's figure over nginx's in the same round and
load) and its median reported, so drift between rounds cancels. Latency added over `direct` is
likewise the row's percentile minus direct's, per round, at the same fixed rate.
"""
import argparse
import json
import statistics
from collections import defaultdict
from html import escape

PEERS = {"gatehouse+log": "nginx+log", "gatehouse+tls": "nginx+tls"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def span(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize(measurements, rows_order):
    by = defaultdict(list)
    for m in measurements:
        by[(m["row"], m["kind"])].append(m)
    kinds = sorted({m["kind"] for m in measurements}, key=lambda k: (k != "max", int(k[4:] or 0) if k != "max" else 0))

    def per_round(row, kind, ref, field, op):
        mine = {m["round"]: m[field] for m in by[(row, kind)]}
        theirs = {m["round"]: m[field] for m in by[(ref, kind)]}
        vals = [op(mine[r], theirs[r]) for r in mine if r in theirs and mine[r] is not None and theirs[r]]
        return med(vals)

    ratio = lambda a, b: a / b
    diff = lambda a, b: a - b
    out = {}
    for row in rows_order:
        out[row] = {}
        for kind in kinds:
            ms = by.get((row, kind), [])
            if not ms:
                continue
            s = {"rounds": len(ms)}
            for field in ["rps", "cpu_us_per_request", "store_cpu_us_per_request", "p50_us", "p99_us", "p999_us"]:
                vals = [m[field] for m in ms]
                lo, hi = span(vals)
                s[field] = {"median": med(vals), "min": lo, "max": hi, "values": vals}
            s["non_2xx"] = sum(m["non_2xx"] for m in ms)
            s["errors"] = sum(m["errors"] for m in ms)
            s["flagged"] = sum(1 for m in ms if m["flagged"])
            s["other_cpu_percent_max"] = max(m["other_cpu_percent"] for m in ms)
            s["cpu_busy_percent"] = {c: med([m["cpu_busy_percent"].get(c) for m in ms])
                                     for c in ms[0]["cpu_busy_percent"]}
            s["rps_vs_nginx"] = per_round(row, kind, "nginx", "rps", ratio)
            s["cpu_vs_nginx"] = per_round(row, kind, "nginx", "cpu_us_per_request", ratio)
            if row in PEERS:
                s["peer"] = PEERS[row]
                s["rps_vs_peer"] = per_round(row, kind, PEERS[row], "rps", ratio)
                s["cpu_vs_peer"] = per_round(row, kind, PEERS[row], "cpu_us_per_request", ratio)
            if kind != "max":
                s["added_p50_us"] = per_round(row, kind, "direct", "p50_us", diff)
                s["added_p99_us"] = per_round(row, kind, "direct", "p99_us", diff)
            out[row][kind] = s
    return out, kinds


def busy_pct(x):
    # Busy time is sampled in ticks, so a saturated CPU can read a little over 100%.
    return None if x is None else min(x, 100.0)


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def fmt_span(s, digits=0):
    if s["median"] is None:
        return "-"
    return f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}-{fmt(s['max'], digits)})"


def table(header, lines):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    def row(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([row(header), "  ".join("-" * w for w in widths)] + [row(l) for l in lines])


def print_tables(summary, kinds, rows_order, idle, callgrind, args):
    if rows_order:
        print_row_tables(summary, kinds, rows_order, idle, args)
    if callgrind:
        print_callgrind(callgrind, args)


def print_row_tables(summary, kinds, rows_order, idle, args):
    print(f"bench/run: {args.rounds} round(s), {args.duration} s per measurement, rows interleaved; "
          f"median (min-max) over rounds; × nginx = median of per-round ratios")
    print()
    print(f"Maximum throughput: wrk -t1 -c{args.connections} -d{args.duration}s (latency in µs)")
    lines = []
    for row in rows_order:
        s = summary[row].get("max")
        if not s:
            continue
        busy = s["cpu_busy_percent"]
        lines.append([row, fmt_span(s["rps"]), fmt(s["rps_vs_nginx"], 2), fmt_span(s["cpu_us_per_request"], 1),
                      fmt(s["cpu_vs_nginx"], 2), fmt(s["p50_us"]["median"]), fmt(s["p99_us"]["median"]),
                      fmt(s["p999_us"]["median"]), f"{fmt(busy_pct(busy.get('cpu0')))}/{fmt(busy_pct(busy.get('cpu1')))}",
                      s["non_2xx"] + s["errors"], s["flagged"] or ""])
    print(table(["row", "requests/s", "× nginx", "CPU µs/req", "× nginx", "p50", "p99", "p99.9",
                 "cpu0/1 %", "non-2xx", "flagged"], lines))
    for row, peer in PEERS.items():
        s = summary.get(row, {}).get("max")
        if s and s.get("rps_vs_peer") is not None:
            print(f"  {row} / {peer}: requests/s × {s['rps_vs_peer']:.2f}, CPU per request × {fmt(s['cpu_vs_peer'], 2)}")
    redis = summary.get("gatehouse+jwt+redis", {}).get("max")
    if redis and redis["store_cpu_us_per_request"]["median"] is not None:
        print(f"  gatehouse+jwt+redis: redis-server adds {redis['store_cpu_us_per_request']['median']:.1f} µs "
              f"of CPU per request (on cpu0, not in the row's CPU)")
    for kind in kinds:
        if kind == "max":
            continue
        print()
        print(f"Fixed rate {int(kind[4:]):,}/s: oha -c{args.connections} -q {kind[4:]} -z {args.duration}s "
              f"--latency-correction (latency in µs; added = minus direct's, same round)")
        lines = []
        for row in rows_order:
            s = summary[row].get(kind)
            if not s:
                continue
            lines.append([row, fmt(s["rps"]["median"]), fmt(s["p50_us"]["median"]), fmt(s["p99_us"]["median"]),
                          fmt(s["p999_us"]["median"]), fmt(s.get("added_p50_us")), fmt(s.get("added_p99_us")),
                          fmt(s["cpu_us_per_request"]["median"], 1), fmt(s["cpu_vs_nginx"], 2),
                          s["non_2xx"] + s["errors"], s["flagged"] or ""])
        print(table(["row", "answered/s", "p50", "p99", "p99.9", "+p50", "+p99", "CPU µs/req", "× nginx",
                     "non-2xx", "flagged"], lines))
    print()
    print(f"Memory: {args.idle_connections} idle keep-alive connections, one request each (VmRSS after - before)")
    nginx_idle = idle.get("nginx", {}).get("kib_per_connection")
    lines = []
    for row in rows_order:
        i = idle.get(row)
        if not i:
            continue
        r = i["kib_per_connection"] / nginx_idle if nginx_idle else None
        lines.append([row, f"{i['kib_per_connection']:.1f}", fmt(r, 2), f"{i['rss_before_kib']:,}", f"{i['rss_after_kib']:,}"])
    print(table(["row", "KiB/connection", "× nginx", "RSS before KiB", "RSS after KiB"], lines))


def print_callgrind(callgrind, args):
    print()
    print(f"Instructions per request (callgrind, {args.callgrind_requests:,} requests per repeat after a "
          f"warm-up, h2load --h1 -c 10; user space, all threads)")
    lines = [[name, len(c["repeats"]), f"{c['per_request']:,.0f}",
              f"{c['per_request_min']:,.0f}-{c['per_request_max']:,.0f}"] for name, c in callgrind.items()]
    print(table(["server", "repeats", "per request, median", "min-max"], lines))
    if "gatehouse" in callgrind and "nginx" in callgrind:
        print(f"  gatehouse / nginx: × {callgrind['gatehouse']['per_request'] / callgrind['nginx']['per_request']:.2f}")


# --- SVG, by hand ----------------------------------------------------------------------------

def color(row):
    if row == "direct":
        return "#888888"
    if row.startswith("gatehouse"):
        return "#2f6fb0"
    if row.startswith("nginx"):
        return "#3a9a4a"
    return {"haproxy": "#d08a1c", "envoy": "#8a4fb0"}.get(row, "#555555")


def panel(y0, title, rows, values, unit, width=900, label_w=170, bar_h=14, gap=6, log=False):
    """Horizontal bars: values[row] = (median, lo, hi) or None; returns (svg, height)."""
    import math
    present = [r for r in rows if values.get(r) and values[r][0] is not None]
    top = max((values[r][2] or values[r][0]) for r in present) if present else 1
    plot_w = width - label_w - 90
    lo_v = max(min(values[r][0] for r in present), 1) if present and log else 0
    def x(v):
        if v is None:
            return label_w
        if log:
            v = max(v, lo_v)
            return label_w + plot_w * (math.log10(v) - math.log10(lo_v) + 0.1) / (math.log10(top) - math.log10(lo_v) + 0.1)
        return label_w + plot_w * v / top
    parts = [f'<text x="10" y="{y0 + 16}" font-size="14" font-weight="bold">{escape(title)}</text>']
    y = y0 + 28
    ref = values.get("nginx")
    if ref and ref[0] is not None:
        # nginx's median as a dashed line through the panel: the reference every ratio uses.
        h = len(rows) * (bar_h + gap) - gap
        parts.append(f'<line x1="{x(ref[0]):.1f}" y1="{y - 3}" x2="{x(ref[0]):.1f}" y2="{y + h + 3}" '
                     f'stroke="#3a9a4a" stroke-dasharray="4,3" stroke-width="1"/>')
    for r in rows:
        v = values.get(r)
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h - 3}" font-size="11" text-anchor="end">{escape(r)}</text>')
        if v and v[0] is not None:
            med_v, lo, hi = v
            parts.append(f'<rect x="{label_w}" y="{y}" width="{max(x(med_v) - label_w, 1):.1f}" height="{bar_h}" fill="{color(r)}"/>')
            if lo is not None and hi is not None and hi > lo:
                cy = y + bar_h / 2
                parts.append(f'<line x1="{x(lo):.1f}" y1="{cy}" x2="{x(hi):.1f}" y2="{cy}" stroke="#000" stroke-width="1"/>')
                for e in (lo, hi):
                    parts.append(f'<line x1="{x(e):.1f}" y1="{y + 2}" x2="{x(e):.1f}" y2="{y + bar_h - 2}" stroke="#000"/>')
            parts.append(f'<text x="{max(x(hi or med_v), x(med_v)) + 6:.1f}" y="{y + bar_h - 3}" font-size="11">{fmt(med_v, 1 if med_v < 100 else 0)} {unit}</text>')
        y += bar_h + gap
    return "\n".join(parts), y - y0 + 10


def write_svg(path, summary, kinds, rows_order, idle, callgrind, meta):
    def vals(kind, field):
        out = {}
        for r in rows_order:
            s = summary[r].get(kind)
            if s:
                out[r] = (s[field]["median"], s[field]["min"], s[field]["max"])
        return out
    parts, y = [], 50
    title = (f"bench/run: {meta['rounds']} round(s) x {meta['duration_s']} s; one worker per server on cpu1, "
             f"upstream + load generator on cpu0")
    note = "median, whiskers min-max over rounds; dashed line: nginx"
    if meta["flagged"]:
        note += (f"; FLAGGED: {meta['flagged_measurements']} of {meta['measurements_total']} measurements "
                 f"ran while other processes used > 5% of a CPU")
    parts.append(f'<text x="10" y="20" font-size="13">{escape(title)}</text>')
    parts.append(f'<text x="10" y="38" font-size="12" fill="{"#b00000" if meta["flagged"] else "#444"}">{escape(note)}</text>')
    sections = [("Requests/s, wrk -t1 -c50 (higher is better)", vals("max", "rps"), "/s", False),
                ("Server CPU per request at full load, µs (lower is better)", vals("max", "cpu_us_per_request"), "µs", False)]
    for kind in kinds:
        if kind != "max":
            sections.append((f"p99 latency at {int(kind[4:]):,}/s, oha with latency correction, µs (log scale)",
                             vals(kind, "p99_us"), "µs", True))
    sections.append(("RSS per idle keep-alive connection, KiB",
                     {r: (idle[r]["kib_per_connection"], None, None) for r in rows_order if r in idle}, "KiB", False))
    if callgrind:
        sections.append(("Instructions per request under callgrind (user space; whiskers: repeats)",
                         {r: (c["per_request"], c["per_request_min"], c["per_request_max"])
                          for r, c in callgrind.items()}, "", False))
    for title, values, unit, log in sections:
        if not values:
            continue
        svg, h = panel(y, title, [r for r in rows_order if r in values] or list(values), values, unit, log=log)
        parts.append(svg)
        y += h
    with open(path, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="900" height="{y + 10}" '
                f'font-family="sans-serif"><rect width="100%" height="100%" fill="#fff"/>\n')
        f.write("\n".join(parts))
        f.write("\n</svg>\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--idle", required=True)
    ap.add_argument("--callgrind", required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--connections", type=int, required=True)
    ap.add_argument("--rates", required=True)
    ap.add_argument("--idle-connections", type=int, required=True)
    ap.add_argument("--callgrind-requests", type=int, required=True)
    ap.add_argument("--quiet-before", type=float, required=True)
    ap.add_argument("--rows", required=True, help="the rows, in the order to show them")
    ap.add_argument("--versions", default="")
    ap.add_argument("--json", required=True)
    ap.add_argument("--svg", required=True)
    args = ap.parse_args()
    if args.duration == int(args.duration):
        args.duration = int(args.duration)

    measurements = load(args.results)
    rows_order = args.rows.split()
    idle = {d["row"]: d["idle"] for d in load(args.idle)}
    callgrind = {}
    for d in load(args.callgrind):
        c = callgrind.setdefault(d["row"], {"requests": d["requests"], "repeats": []})
        c["repeats"].append({**d, "per_request": d["instructions"] / d["requests"]})
    for c in callgrind.values():
        per = [r["per_request"] for r in c["repeats"]]
        c.update({"per_request": med(per), "per_request_min": min(per), "per_request_max": max(per)})
    summary, kinds = summarize(measurements, rows_order)
    flagged = [m for m in measurements if m["flagged"]]

    if not measurements:
        rows_order = []
    print_tables(summary, kinds, rows_order, idle, callgrind, args)
    print()
    worst = max((m["other_cpu_percent"] for m in measurements), default=0)
    if not measurements:
        print(f"Only callgrind's counts (they do not depend on load); other processes used "
              f"{args.quiet_before:.1f}% of a CPU before the run.")
    elif flagged:
        print(f"FLAGGED: {len(flagged)} of {len(measurements)} measurements ran while other processes used more "
              f"than 5% of a CPU (worst {worst:.1f}%); before the run they used {args.quiet_before:.1f}%.")
    else:
        print(f"No measurement flagged: other processes stayed under 5% of a CPU (worst {worst:.1f}%; "
              f"{args.quiet_before:.1f}% before the run).")

    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    meta = {
        "rounds": args.rounds, "duration_s": args.duration, "connections": args.connections,
        "rates": [int(r) for r in args.rates.split(",")], "idle_connections": args.idle_connections,
        "callgrind_requests": args.callgrind_requests, "cpus": "servers under test on cpu1 (one worker), "
        "upstream nginx, redis-server and the load generator on cpu0", "versions": args.versions,
        "other_cpu_percent_before_run": args.quiet_before, "loadavg_at_end": loadavg,
        "flagged": bool(flagged), "flagged_measurements": len(flagged), "measurements_total": len(measurements),
        "flag_threshold_percent_of_a_cpu": 5.0,
    }
    report = {"meta": meta, "rows": summary, "idle": idle, "callgrind": callgrind, "measurements": measurements}
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    write_svg(args.svg, summary, kinds, rows_order, idle, callgrind, meta)
    print(f"wrote {args.json} and {args.svg}")


if __name__ == "__main__":
    main()
