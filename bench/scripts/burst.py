#!/usr/bin/env python3
"""A burst of new connections against a server: open N TCP connections as fast as possible
(non-blocking connects, one epoll loop), send `GET /health` on each as soon as it is
established, read the answer, close. Reports how long connections took to establish and to
be answered, and how many needed a SYN retransmission (established after more than 900 ms:
the kernel dropped the handshake because a listen queue was full, and the client retried
after its 1 s initial RTO).

    burst.py HOST PORT N [--procs P] [--source IP] [--json FILE] [--timeout S]

--procs splits the burst over P client processes started together (each opens N/P
connections), for hosts whose open-file limit is below N.

--source binds the client sockets to a loopback address of their own (127.1.0.K), so each
run has a full ephemeral port range even while the last run's sockets sit in TIME-WAIT.

Used by bench/scripts/backlog.sh (ATLAS_LISTEN_BACKLOG 1024 vs somaxconn); see
bench/RESULTS.md. Standard library only.
"""

import argparse
import json
import resource
import selectors
import socket
import sys
import time


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def run_one(a, n, go):
    """One client process: opens `n` connections once `go` (a monotonic time) arrives;
    returns (connect_ms, answer_ms, errors, timed_out, opened_s)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    request = f"GET /health HTTP/1.1\r\nHost: {a.host}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    started = {}
    connected = {}
    answered = {}
    buffers = {}
    errors = {}

    state = {"pending": 0}

    def handle(timeout):
        for key, mask in sel.select(timeout=timeout):
            s = key.fileobj
            now = time.monotonic()
            if s not in connected:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    errors[f"so_error:{err}"] = errors.get(f"so_error:{err}", 0) + 1
                    sel.unregister(s)
                    s.close()
                    state["pending"] -= 1
                    continue
                connected[s] = now
                try:
                    s.send(request)
                except OSError as e:
                    errors[f"send:{e.errno}"] = errors.get(f"send:{e.errno}", 0) + 1
                    sel.unregister(s)
                    s.close()
                    state["pending"] -= 1
                    continue
                buffers[s] = b""
                sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                chunk = s.recv(4096)
            except OSError as e:
                chunk = b""
                errors[f"recv:{e.errno}"] = errors.get(f"recv:{e.errno}", 0) + 1
            buffers[s] += chunk
            done = b"\r\n\r\n" in buffers[s] and buffers[s].endswith(b"}")
            if done or not chunk:
                if done:
                    answered[s] = now
                else:
                    errors["closed"] = errors.get("closed", 0) + 1
                sel.unregister(s)
                s.close()
                state["pending"] -= 1

    while time.monotonic() < go:
        time.sleep(0.0005)
    t0 = time.monotonic()
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if a.source:
            s.bind((a.source, 0))
        started[s] = time.monotonic()
        rc = s.connect_ex((a.host, a.port))
        if rc not in (0, 115):  # EINPROGRESS
            errors[f"connect:{rc}"] = errors.get(f"connect:{rc}", 0) + 1
            s.close()
            continue
        sel.register(s, selectors.EVENT_WRITE)
        state["pending"] += 1
        # Serve completions while opening, so times measure the server, not this loop.
        if i % 32 == 31:
            handle(0)
    opened_s = time.monotonic() - t0

    deadline = t0 + a.timeout
    while state["pending"] and time.monotonic() < deadline:
        handle(0.5)
    timed_out = len(sel.get_map())
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    conn_ms = [(connected[s] - started[s]) * 1000 for s in connected]
    # Answer times from the burst's start (go), so processes add up to one burst.
    ans_ms = [(answered[s] - go) * 1000 for s in answered]
    return conn_ms, ans_ms, errors, timed_out, opened_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--json")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--source")
    ap.add_argument("--procs", type=int, default=1)
    a = ap.parse_args()

    go = time.monotonic() + 0.3
    share = [a.n // a.procs + (1 if i < a.n % a.procs else 0) for i in range(a.procs)]
    if a.procs == 1:
        results = [run_one(a, a.n, go)]
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        with ctx.Pool(a.procs) as pool:
            results = pool.starmap(run_one, [(a, k, go) for k in share])
    total_s = time.monotonic() - go
    conn_ms = [m for r in results for m in r[0]]
    ans_ms = [m for r in results for m in r[1]]
    errors = {}
    for r in results:
        for k, v in r[2].items():
            errors[k] = errors.get(k, 0) + v
    out = {
        "n": a.n,
        "procs": a.procs,
        "opened_s": round(max(r[4] for r in results), 3),
        "connected": len(conn_ms),
        "answered": len(ans_ms),
        "timed_out": sum(r[3] for r in results),
        "errors": errors,
        "retried_syn": sum(1 for m in conn_ms if m > 900),
        "connect_ms": {p: pct(conn_ms, p) for p in (50, 99, 100)},
        "answer_ms": {p: pct(ans_ms, p) for p in (50, 99, 100)},
        "all_answered_s": round(max(ans_ms) / 1000, 3) if ans_ms else None,
        "total_s": round(total_s, 3),
    }
    text = json.dumps(out)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    return 0 if len(ans_ms) == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
