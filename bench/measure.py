#!/usr/bin/env python3
"""One measurement of bench/run: the load generator against one row, with the CPU around it.

Runs wrk (closed loop, fixed connections) or oha (a fixed rate, with its coordinated-omission
correction) pinned to the load generator's CPU, and reads /proc before and after:

- the server's CPU (utime+stime of its process, every thread) and, when given, the store's
  (redis-server): divided by the requests answered, the CPU per request;
- every CPU's busy time from /proc/stat, and the CPU of bench/run's whole process tree (every
  process it started, the load generator included: a finished child's time is in its parent's
  cutime/cstime). What the machine spent beyond that tree is *other processes*; over 5% of one
  CPU, the measurement is flagged. Steal (the hypervisor's) is reported apart, not counted.

Appends one JSON object per measurement to --out and prints a one-line summary on stderr.
`measure.py --other ROOT SECONDS` prints what other processes use with nothing measured.
"""
import argparse
import json
import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
FLAG_OTHER_PERCENT = 5.0


def read_stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name may hold spaces and parentheses; the fields start after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def process_ticks(pid: int) -> int:
    """utime + stime of one process (all its threads), in clock ticks."""
    f = read_stat(pid)
    return int(f[11]) + int(f[12])


def tree_ticks(root: int) -> int:
    """utime+stime+cutime+cstime over root and every descendant still alive."""
    parent, ticks = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            f = read_stat(int(name))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        pid = int(name)
        parent[pid] = int(f[1])
        ticks[pid] = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    total = 0
    for pid, t in ticks.items():
        p = pid
        while p > 1 and p != root:
            p = parent.get(p, 0)
        if p == root:
            total += t
    return total


def cpu_lines() -> dict[str, tuple[int, int]]:
    """Per /proc/stat line (cpu, cpu0, cpu1, ...): (busy ticks, steal ticks)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *v = line.split()
            v = [int(x) for x in v] + [0] * 10
            user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
            out[name] = (user + nice + system + irq + softirq, steal)
    return out


def snapshot(args) -> dict:
    return {
        "t": time.monotonic(),
        "cpu": cpu_lines(),
        "tree": tree_ticks(args.root),
        "server": process_ticks(args.pid),
        "store": process_ticks(args.store_pid) if args.store_pid else 0,
    }


def run_wrk(args) -> dict:
    cmd = ["taskset", "-c", args.loadgen_cpu, "wrk", "-t1", f"-c{args.connections}",
           f"-d{args.duration}s", "--timeout", "5s", "-s", args.lua, args.url]
    if args.tokens:
        cmd += ["--", args.tokens]
    out = subprocess.run(cmd, capture_output=True, text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH-WRK ")), None)
    if out.returncode != 0 or line is None:
        sys.exit(f"bench: wrk failed against {args.row}:\n{out.stdout}{out.stderr}")
    r = json.loads(line[len("BENCH-WRK "):])
    errors = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeout_errors"]
    return {
        "requests": r["requests"],
        "seconds": r["duration_us"] / 1e6,
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_us": r["p50_us"], "p99_us": r["p99_us"], "p999_us": r["p999_us"], "max_us": r["max_us"],
        # wrk counts answers with a status of 400 or more; the others (1xx, 3xx) cannot come
        # from these servers, whose every answer was checked to be 200 before measuring.
        "non_2xx": r["status_errors"],
        "errors": errors,
    }


def run_oha(args) -> dict:
    cmd = ["taskset", "-c", args.loadgen_cpu, "oha", "--no-tui", "--output-format", "json",
           "-c", str(args.connections), "-q", str(args.rate), "-z", f"{args.duration}s",
           "--latency-correction", "--worker-threads", "1", "-t", "5s"]
    if args.tokens:
        with open(args.tokens) as f:
            cmd += ["-H", f"Authorization: Bearer {f.readline().strip()}"]
    if args.url.startswith("https:"):
        cmd.append("--insecure")
    cmd.append(args.url)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench: oha failed against {args.row}:\n{out.stdout}{out.stderr}")
    r = json.loads(out.stdout)
    statuses = {int(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
    answered = sum(statuses.values())
    errors = dict(r.get("errorDistribution", {}))
    # With -z, requests still in flight at the deadline are cut off and listed as such: an
    # artifact of stopping, not a failure of the server.
    aborted = sum(v for k, v in errors.items() if "deadline" in k)
    failed = sum(v for k, v in errors.items() if "deadline" not in k)
    p = r["latencyPercentiles"]
    seconds = r["summary"]["total"]
    return {
        "requests": answered,
        "seconds": seconds,
        "rps": answered / seconds if seconds else 0.0,
        "p50_us": (p.get("p50") or 0) * 1e6, "p99_us": (p.get("p99") or 0) * 1e6,
        "p999_us": (p.get("p99.9") or 0) * 1e6, "max_us": (r["summary"].get("slowest") or 0) * 1e6,
        "non_2xx": sum(v for k, v in statuses.items() if not 200 <= k < 300),
        "errors": failed,
        "aborted_at_deadline": aborted,
        "error_kinds": {k: v for k, v in errors.items() if "deadline" not in k},
    }


def other_percent(root: int, seconds: float) -> float:
    """What processes outside root's tree use of a CPU over `seconds`, in percent."""
    b_cpu, b_tree, t0 = cpu_lines(), tree_ticks(root), time.monotonic()
    time.sleep(seconds)
    a_cpu, a_tree, t1 = cpu_lines(), tree_ticks(root), time.monotonic()
    busy = a_cpu["cpu"][0] - b_cpu["cpu"][0]
    return max(0.0, (busy - (a_tree - b_tree)) / TICK / (t1 - t0) * 100)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--other":
        # measure.py --other ROOT SECONDS: the machine without a measurement running.
        print(f"{other_percent(int(sys.argv[2]), float(sys.argv[3])):.1f}")
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--row", required=True)
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True, help="the server process measured")
    ap.add_argument("--store-pid", type=int, default=0, help="redis-server, for the Redis row")
    ap.add_argument("--root", type=int, required=True, help="bench/run's pid: its tree is ours")
    ap.add_argument("--rate", type=int, default=0, help="0: wrk at full speed; else oha at this rate")
    ap.add_argument("--tokens", default="")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--lua", required=True)
    ap.add_argument("--loadgen-cpu", default="0")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.duration == int(args.duration):
        args.duration = int(args.duration)

    before = snapshot(args)
    r = run_oha(args) if args.rate else run_wrk(args)
    after = snapshot(args)

    elapsed = after["t"] - before["t"]
    busy = {k: after["cpu"][k][0] - before["cpu"][k][0] for k in after["cpu"]}
    steal = after["cpu"]["cpu"][1] - before["cpu"]["cpu"][1]
    ours = after["tree"] - before["tree"]
    to_us = 1e6 / TICK
    requests = max(r["requests"], 1)
    other = max(0.0, (busy["cpu"] - ours) / TICK / elapsed * 100)
    r.update({
        "row": args.row,
        "round": args.round,
        "kind": f"rate{args.rate}" if args.rate else "max",
        "offered_rate": args.rate or None,
        "cpu_us_per_request": (after["server"] - before["server"]) * to_us / requests,
        "store_cpu_us_per_request": ((after["store"] - before["store"]) * to_us / requests
                                     if args.store_pid else None),
        "cpu_busy_percent": {k: round(v / TICK / elapsed * 100, 1) for k, v in busy.items() if k != "cpu"},
        "other_cpu_percent": round(other, 1),
        "steal_percent": round(steal / TICK / elapsed * 100, 1),
        "flagged": other > FLAG_OTHER_PERCENT,
    })
    with open(args.out, "a") as f:
        f.write(json.dumps(r) + "\n")
    what = f"{args.rate}/s" if args.rate else "max"
    busy_text = " ".join(f"{k} {v:.0f}%" for k, v in r["cpu_busy_percent"].items())
    print(f"  {args.row:<14} {what:>7}: {r['rps']:9.0f} req/s  {r['cpu_us_per_request']:6.1f} µs/req  "
          f"p50 {r['p50_us']:7.0f} p99 {r['p99_us']:7.0f} µs  non-2xx {r['non_2xx']}  errors {r['errors']}  "
          f"[{busy_text}, other {other:.1f}%]", file=sys.stderr)
    if r["flagged"]:
        print(f"bench: warning: other processes used {other:.1f}% of a CPU while {args.row} ({what}, "
              f"round {args.round}) was measured; this measurement is flagged", file=sys.stderr)
    if r["non_2xx"] or r["errors"]:
        print(f"bench: warning: {args.row} ({what}, round {args.round}): {r['non_2xx']} non-2xx answers, "
              f"{r['errors']} errors", file=sys.stderr)


if __name__ == "__main__":
    main()
