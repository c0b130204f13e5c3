"""GET /metrics of the example app (prom-client), on the hosts as test_lifecycle.py leaves them:
release 1.0.0 with the Redis cache on. Under PM2 each scrape is answered by one of the two workers
(round robin), so every figure checked is one that worker has seen after a few requests."""
from __future__ import annotations

from metrics_text import series

testinfra_hosts = ["docker://gr-app-pm2", "docker://gr-app-systemd"]

SCRAPE = (
    "python3 -c \"import urllib.request as u\n"
    "for p in ['/api/standings/39'] * 8 + ['/no/such/path'] * 4:\n"
    "    try: u.urlopen('http://127.0.0.1:3000' + p, timeout=5).read()\n"
    "    except Exception: pass\n"
    "r = u.urlopen('http://127.0.0.1:3000/metrics', timeout=5)\n"
    "print(r.status, r.headers['Content-Type']); print(r.read().decode())\"")


def sample(text: str, name: str, **labels) -> float | None:
    """Value of the series NAME{labels} (labels in any order), or None."""
    values = series(text, name, **labels)
    return values[0] if values else None


def test_metrics_after_a_few_requests(host):
    out = host.check_output(SCRAPE)
    status_line, text = out.split("\n", 1)
    assert status_line.startswith("200 text/plain"), status_line
    # The histogram, labelled by the route pattern (never the raw URL) and the status code.
    assert sample(text, "http_request_duration_seconds_count", route="/api/standings/:id", status_code="200") >= 1, text[:3000]
    assert sample(text, "http_request_duration_seconds_bucket", route="/api/standings/:id", status_code="200", le="3") >= 1
    assert sample(text, "http_request_duration_seconds_count", route="unmatched", status_code="404") >= 1
    assert 'route="/api/standings/39"' not in text and "/no/such/path" not in text
    # The pool, read at scrape time: the standings' query leaves an idle connection behind.
    for gauge in ("pg_pool_total", "pg_pool_idle", "pg_pool_waiting"):
        assert sample(text, gauge) is not None, gauge
    assert sample(text, "pg_pool_max") == 10
    # The cache is on (test_lifecycle.py): after the first answer every read of league 39 hits.
    assert sample(text, "app_cache_hits_total", cache="standings") >= 1
    assert "# TYPE app_cache_misses_total counter" in text
    # Queries per request and their duration, per route pattern (seed 003's query count).
    assert sample(text, "app_db_queries_per_request_count", route="/api/standings/:id") >= 1
    assert sample(text, "app_db_queries_per_request_bucket", route="unmatched", le="0") >= 1
    assert sample(text, "app_db_query_duration_seconds_count", route="flag_refresh") >= 1  # the periodic flags read
    # prom-client's process metrics.
    assert sample(text, "process_resident_memory_bytes") > 0
