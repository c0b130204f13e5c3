# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP load and probes for http_slo and pool_check's http source.

Threads, each holding one persistent keep-alive connection (http.client), pull request numbers
from a shared counter until the request count or the duration is reached. Per-thread results are
merged at the end, so the hot loop takes no lock. Standard library only, plus jmespath for the
assertions (imported by the caller's module_utils, guarded).
"""
from __future__ import annotations

import http.client
import itertools
import json
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from ansible_collections.gradual.rollout.plugins.module_utils.gates import GateInputError, parse_duration, percentile

# The bounds of a load, and the request count when neither requests nor duration is given.
MAX_REQUESTS = 1000000
MAX_CONCURRENCY = 256
DEFAULT_REQUESTS = 100
# A load's settings when not given (http_slo's argument spec and a gate's `load:` alike).
LOAD_DEFAULTS = {"concurrency": 10, "timeout": 10.0, "validate_certs": True}

RECONNECT_ERRORS = (http.client.RemoteDisconnected, http.client.BadStatusLine,
                    ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class Target:
    """A parsed http(s) URL: scheme, host, port and the path with its query string."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url=%r is not an http:// or https:// URL with a host" % url)
        self.url = url
        self.scheme = parts.scheme
        self.host = parts.hostname
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise ValueError("url=%r has a bad port: %s" % (url, exc)) from None
        self.path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        self.host_header = parts.netloc.rsplit("@", 1)[-1]


class Prober:
    """One persistent connection to TARGET; ``request`` reconnects once if the server closed it."""

    def __init__(self, target: Target, timeout: float = 10.0, validate_certs: bool = True,
                 ca_path: str | None = None):
        self.target = target
        self.timeout = timeout
        self.context = None
        if target.scheme == "https":
            self.context = ssl.create_default_context(cafile=ca_path)
            if not validate_certs:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self.conn = None

    def _connect(self):
        if self.context is not None:
            conn = http.client.HTTPSConnection(self.target.host, self.target.port,
                                               timeout=self.timeout, context=self.context)
        else:
            conn = http.client.HTTPConnection(self.target.host, self.target.port, timeout=self.timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, headers: dict, body: bytes | None):
        """(status, body bytes) of one request; raises OSError / HTTPException on failure."""
        for attempt in (1, 2):
            fresh = self.conn is None
            if fresh:
                self.conn = self._connect()
            try:
                self.conn.request(method, self.target.path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, data
            except RECONNECT_ERRORS:
                self.close()
                if fresh or attempt == 2:  # a new connection failing is a real error
                    raise
            except Exception:
                self.close()
                raise
        raise http.client.HTTPException("unreachable")  # pragma: no cover


def fetch_json(prober: Prober, headers: dict | None = None):
    """GET the prober's URL and decode JSON; ValueError naming the status or the bad body."""
    status, data = prober.request("GET", dict(headers or {}), None)
    if status >= 400:
        raise ValueError("GET %s answered HTTP %s" % (prober.target.url, status))
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("GET %s did not return JSON: %r" % (prober.target.url, data[:120])) from None


class _Worker:
    """Per-thread results: latencies (ms), status counts, error counts, inspected responses."""

    def __init__(self):
        self.latencies = []
        self.statuses = {}
        self.errors = {}
        self.failures = 0
        self.inspected = []


def _classify(status: int, accepted) -> bool:
    return status in accepted if accepted else status < 400


def _one(prober, worker, seq, method, headers, body, accepted, inspect):
    t0 = time.perf_counter()
    try:
        status, data = prober.request(method, headers, body)
    except (OSError, http.client.HTTPException) as exc:
        worker.latencies.append((time.perf_counter() - t0) * 1000.0)
        name = exc.__class__.__name__
        worker.errors[name] = worker.errors.get(name, 0) + 1
        worker.failures += 1
        return
    worker.latencies.append((time.perf_counter() - t0) * 1000.0)
    worker.statuses[status] = worker.statuses.get(status, 0) + 1
    if not _classify(status, accepted):
        worker.failures += 1
    if inspect is not None and inspect(seq, status, data):
        worker.inspected.append((seq, status, data))


def run_load(target: Target, method: str = "GET", headers: dict | None = None,
             body: bytes | None = None, timeout: float = 10.0, validate_certs: bool = True,
             requests: int | None = None, duration: float | None = None, concurrency: int = 10,
             sequential: int = 0, accepted=None, inspect=None, ca_path: str | None = None) -> dict:
    """Drive load and return raw figures.

    The first SEQUENTIAL requests go one after the other on one connection (so "request 2" of an
    assertion really follows request 1); the rest run on CONCURRENCY threads. INSPECT(seq, status,
    body) says which responses to keep for the assertions.
    """
    headers = dict(headers or {})
    headers.setdefault("Host", target.host_header)
    headers.setdefault("User-Agent", "gradual.rollout-http_slo")
    headers.setdefault("Connection", "keep-alive")
    workers = []
    start = time.monotonic()
    deadline = start + duration if duration else None
    limit = requests or 0

    def more(seq: int) -> bool:
        if limit and seq > limit:
            return False
        return deadline is None or time.monotonic() < deadline

    first = _Worker()
    workers.append(first)
    prober = Prober(target, timeout, validate_certs, ca_path)
    seq = 1
    while seq <= sequential and more(seq):
        _one(prober, first, seq, method, headers, body, accepted, inspect)
        seq += 1
    prober.close()
    counter = itertools.count(seq)  # next() on itertools.count is atomic under the GIL

    def loop(worker: _Worker):
        mine = Prober(target, timeout, validate_certs, ca_path)
        try:
            while True:
                n = next(counter)
                if not more(n):
                    return
                _one(mine, worker, n, method, headers, body, accepted, inspect)
        finally:
            mine.close()

    threads = []
    for _index in range(max(1, concurrency)):
        worker = _Worker()
        workers.append(worker)
        thread = threading.Thread(target=loop, args=(worker,), daemon=True)
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    return _merge(workers, elapsed)


def _merge(workers: list, elapsed: float) -> dict:
    latencies, statuses, errors, inspected, failures = [], {}, {}, [], 0
    for w in workers:
        latencies.extend(w.latencies)
        failures += w.failures
        inspected.extend(w.inspected)
        for k, v in w.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
        for k, v in w.errors.items():
            errors[k] = errors.get(k, 0) + v
    total = len(latencies)
    inspected.sort(key=lambda item: item[0])
    return {"requests": total, "failures": failures, "elapsed_s": round(elapsed, 3),
            "rps": round(total / elapsed, 1) if elapsed > 0 else None,
            "status_counts": {str(k): v for k, v in sorted(statuses.items())},
            "transport_errors": errors,
            "error_rate": round(100.0 * failures / total, 3) if total else None,
            "latencies_ms": latencies, "inspected": inspected}


def latency_figures(latencies_ms: list) -> dict:
    """p50 / p95 / p99 / mean / max in milliseconds, rounded to 0.01 ms."""
    if not latencies_ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    return {"p50_ms": round(percentile(latencies_ms, 50), 2),
            "p95_ms": round(percentile(latencies_ms, 95), 2),
            "p99_ms": round(percentile(latencies_ms, 99), 2),
            "mean_ms": round(sum(latencies_ms) / len(latencies_ms), 2),
            "max_ms": round(max(latencies_ms), 2)}


def load_settings(url, requests=None, duration=None, concurrency=LOAD_DEFAULTS["concurrency"],
                  timeout=LOAD_DEFAULTS["timeout"]) -> dict:
    """A bounded load's settings checked: the target, the duration in seconds (a number or "30s",
    "5m"), the request count (DEFAULT_REQUESTS when neither is given), the concurrency and the
    timeout. Raises ValueError naming the bad value and its bounds."""
    try:
        target = Target(url)
        seconds = parse_duration(duration, "duration") if duration is not None else None
    except GateInputError as exc:
        raise ValueError(str(exc)) from None
    if requests is None and seconds is None:
        requests = DEFAULT_REQUESTS
    if requests is not None and not 1 <= requests <= MAX_REQUESTS:
        raise ValueError("requests=%d must be between 1 and %d" % (requests, MAX_REQUESTS))
    if seconds is not None and seconds <= 0:
        raise ValueError("duration=%r must be > 0" % (duration,))
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError("concurrency=%d must be between 1 and %d" % (concurrency, MAX_CONCURRENCY))
    if timeout <= 0:
        raise ValueError("timeout=%s must be > 0 seconds" % timeout)
    return {"target": target, "duration": seconds, "requests": requests, "concurrency": concurrency,
            "timeout": timeout}
