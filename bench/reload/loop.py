#!/usr/bin/env python
"""A bounded request loop through nginx: WORKERS threads, each on its own keep-alive HTTPS
connection, GET URL until STOP_FILE appears or DURATION seconds pass (or MAX requests in all).
Every answer other than 200 and every connection error counts as failed, except that a GET on a
reused keep-alive connection the server closed before answering is resent once on a new
connection, as HTTP clients do (counted in stale_keepalive_resends). Writes JSON to OUT.

Runs on the nginx host (python3 only, no third-party module); used by the molecule `web`
scenario's verify and by bench/reload/run.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse


def worker(url: urllib.parse.SplitResult, deadline: float, args, stats, lock, stop: threading.Event):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    path = url.path + (("?" + url.query) if url.query else "")
    conn = None
    while not stop.is_set() and time.monotonic() < deadline:
        with lock:
            if stats["sent"] >= args.max:
                return
            stats["sent"] += 1
        start = time.monotonic()
        outcome = None
        for attempt in (1, 2):
            reused = conn is not None
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection(url.hostname, url.port or 443, context=ctx, timeout=args.timeout)
                conn.request("GET", path, headers={"Connection": "keep-alive"})
                resp = conn.getresponse()
                resp.read()
                outcome = str(resp.status)
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                # An idle keep-alive connection the server closed (an nginx reload retires its old
                # workers) before any answer: every HTTP client resends a GET once on a new
                # connection. Counted apart; a second failure is a failure.
                if reused and attempt == 1:
                    with lock:
                        stats["stale_keepalive_resends"] += 1
                    continue
                outcome = "error:" + type(exc).__name__
            except (OSError, http.client.HTTPException) as exc:
                outcome = "error:" + type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
                break
        elapsed = time.monotonic() - start
        with lock:
            stats["outcomes"][outcome] += 1
            if outcome != "200":
                stats["failed"] += 1
                if len(stats["failures"]) < 20:
                    stats["failures"].append({"t": round(time.time(), 3), "outcome": outcome})
            stats["latencies"].append(elapsed)
        if args.pause:
            time.sleep(args.pause)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="https://127.0.0.1/api/standings/39")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--duration", type=float, default=180, help="upper bound in seconds")
    p.add_argument("--max", type=int, default=200000, help="upper bound on requests")
    p.add_argument("--pause", type=float, default=0.005, help="seconds each worker waits between requests")
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--stop-file", default="/tmp/gr-loop.stop")
    p.add_argument("--out", default="/tmp/gr-loop.json")
    args = p.parse_args()

    url = urllib.parse.urlsplit(args.url)
    stats = {"sent": 0, "failed": 0, "stale_keepalive_resends": 0, "outcomes": collections.Counter(), "failures": [], "latencies": []}
    lock = threading.Lock()
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + args.duration
    threads = [threading.Thread(target=worker, args=(url, deadline, args, stats, lock, stop), daemon=True)
               for _worker in range(args.workers)]
    for t in threads:
        t.start()
    while time.monotonic() < deadline and any(t.is_alive() for t in threads):
        if os.path.exists(args.stop_file):
            break
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(args.timeout + 1)
    lat = sorted(stats["latencies"])

    def pct(q):
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None

    result = {
        "url": args.url, "workers": args.workers, "seconds": round(time.monotonic() - started, 2),
        "sent": stats["sent"], "failed": stats["failed"],
        "stale_keepalive_resends": stats["stale_keepalive_resends"], "outcomes": dict(stats["outcomes"]),
        "first_failures": stats["failures"],
        "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99),
                       "max": round(lat[-1] * 1000, 1) if lat else None},
    }
    with open(args.out + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    os.replace(args.out + ".tmp", args.out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
