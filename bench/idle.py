#!/usr/bin/env python3
"""Memory per idle keep-alive connection, for bench/run.

Reads the server process's VmRSS, opens COUNT connections one after the other, sends one
request on each and reads its whole answer (so the connection has served a request, as a
client's idle keep-alive connection has), leaves them all open and idle, waits a moment, and
reads VmRSS again. Prints one JSON object: RSS before and after (KiB) and the difference per
connection. Every answer must be a 2xx; the connections are closed at the end.

Usage: idle.py PID URL COUNT [TOKEN]
"""
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
    pid, url, count = int(sys.argv[1]), urlsplit(sys.argv[2]), int(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else ""
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
                sys.exit(f"idle.py: {sys.argv[2]} answered {status}")
            conns.append(s)
        time.sleep(1.0)
        after = rss_kib(pid)
    finally:
        for s in conns:
            s.close()
    print(json.dumps({"connections": count, "rss_before_kib": before, "rss_after_kib": after,
                      "kib_per_connection": (after - before) / count}))


if __name__ == "__main__":
    main()
