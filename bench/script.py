#!/usr/bin/env python3
"""The rate-limit script's own cost inside Redis, with nothing else around it.

Starts a redis-server of its own on a free loopback port, loads the script, sends CALLS batch
calls of CHECKS requests each (one policy per request, subjects cycled over 100, the bench
rows' never-refusing limit) one after another, and prints Redis's own `usec_per_call` for
EVALSHA from `INFO commandstats`: the time Redis ran the script, which no client-side noise
enters. Run it a few times, interleaving the scripts compared, and take medians.

    python3 bench/script.py [--script FILE] [--calls N] [--checks N] [--algorithm gcra|tb|fw|swc|sl]
                            [--rounds N]

The script defaults to the gateway's own (gateway/src/ratelimit/store/ratelimit.lua). Exits
non-zero, saying why, when redis-server is missing or the script answers an error.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCRIPT = os.path.join(HERE, "..", "gateway", "src", "ratelimit", "store", "ratelimit.lua")
SUBJECTS = 100


class Redis:
    """A minimal RESP2 client: enough for SCRIPT LOAD, EVALSHA and INFO."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.reader = self.sock.makefile("rb")

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self.read()

    def read(self):
        line = self.reader.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2].decode()
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir):
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("script.py: redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            Redis(port).call("PING")
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit(f"script.py: redis-server did not answer on port {port}")


def one_round(redis, sha, calls, checks, algorithm):
    redis.call("FLUSHALL")
    redis.call("CONFIG", "RESETSTAT")
    now = int(time.time() * 1e6)
    for i in range(calls):
        keys, argv = [], ["batch", 2000]
        for j in range(checks):
            key = "bench:{%s:fp|sub:user-%d}" % (algorithm, (i * checks + j) % SUBJECTS)
            keys += [key, key + ":log"]
            # now, one check: algorithm, limit, period (ticks), burst, cost
            argv += [now + i * 100 + j, 1, algorithm, 1_000_000_000, 1_000_000, 1_000_000_000, 1]
        answer = redis.call("EVALSHA", sha, len(keys), *keys, *argv)
        if len(answer) != 4 * checks or answer[0] != 1:
            sys.exit(f"script.py: call {i} answered {answer[:8]}")
    for line in redis.call("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_evalsha:"):
            fields = dict(part.split("=") for part in line.split(":", 1)[1].split(","))
            return float(fields["usec_per_call"])
    sys.exit("script.py: INFO commandstats has no evalsha line")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", default=DEFAULT_SCRIPT)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--checks", type=int, default=15)
    parser.add_argument("--algorithm", default="gcra", choices=["gcra", "tb", "fw", "swc", "sl"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with open(args.script) as f:
        text = f.read()
    with tempfile.TemporaryDirectory(prefix="gatehouse-script-") as workdir:
        process, port = start_redis(workdir)
        try:
            redis = Redis(port)
            sha = redis.call("SCRIPT", "LOAD", text)
            rounds = [one_round(redis, sha, args.calls, args.checks, args.algorithm)
                      for _ in range(args.rounds)]
        finally:
            process.terminate()
            process.wait()
    per_check = [r / args.checks for r in rounds]
    print(f"{os.path.basename(args.script)}: {args.algorithm}, {args.checks} checks a call, "
          f"{args.calls} calls a round")
    print("usec per call, by round: " + ", ".join(f"{r:.1f}" for r in rounds))
    print(f"median {sorted(rounds)[len(rounds) // 2]:.1f} usec a call, "
          f"{sorted(per_check)[len(per_check) // 2]:.2f} a check")


if __name__ == "__main__":
    main()
