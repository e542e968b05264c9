#!/usr/bin/env python3
"""Memory per idle keep-alive connection, for bench/run.

Reads the server process's VmRSS, opens COUNT connections one after the other, sends one
request on each and reads its whole answer (so the connection has served a request, as a
client's idle keep-alive connection has), leaves them all open and idle, waits a moment, and
reads VmRSS again. Prints one JSON object: RSS before and after (KiB) and the difference per
connection. Every answer must be a 2xx; the connections are closed at the end.

Usage: idle.py [--pause SECONDS] PID URL COUNT [TOKEN]

--pause waits that long after each connection's answer, so that few connections are still
unparked at once (the gateway parks one idle for `limits.park_idle_after`): what a parked
connection holds, apart from what a burst's peak leaves in the allocator.
"""
import argparse
import json
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def read_answer(sock) -> int:
    """Reads one HTTP/1.1 answer (Content-Length or chunked); returns its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the answer's head")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    if "content-length" in fields:
        need = int(fields["content-length"])
        while len(body) < need:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed inside the body")
            body += chunk
    elif "chunked" in fields.get("transfer-encoding", "").lower():
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed inside the body")
            body += chunk
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description="RSS per idle keep-alive connection")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds to wait after each connection's answer")
    parser.add_argument("pid", type=int)
    parser.add_argument("url")
    parser.add_argument("count", type=int)
    parser.add_argument("token", nargs="?", default="")
    args = parser.parse_args()
    pid, url, count, token = args.pid, urlsplit(args.url), args.count, args.token
    tls = None
    if url.scheme == "https":
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        tls.set_alpn_protocols(["http/1.1"])
    request = f"GET / HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
    if token:
        request += f"Authorization: Bearer {token}\r\n"
    request = (request + "\r\n").encode()

    time.sleep(0.5)
    before = rss_kib(pid)
    conns = []
    try:
        for _ in range(count):
            s = socket.create_connection((url.hostname, url.port))
            if tls:
                s = tls.wrap_socket(s, server_hostname=url.hostname)
            s.sendall(request)
            status = read_answer(s)
            if not 200 <= status < 300:
                sys.exit(f"idle.py: {args.url} answered {status}")
            conns.append(s)
            if args.pause:
                time.sleep(args.pause)
        time.sleep(1.0)
        after = rss_kib(pid)
    finally:
        for s in conns:
            s.close()
    print(json.dumps({"connections": count, "rss_before_kib": before, "rss_after_kib": after,
                      "kib_per_connection": (after - before) / count}))


if __name__ == "__main__":
    main()
