"""cache_check against a real Redis with ACL users: the hit rate of a scripted hit/miss pattern,
memory and eviction limits, SCAN key counts, and bad input."""
from __future__ import annotations

import subprocess
import threading
import time

import pytest

import services
from ansible_run import run_module

CLIENT_NAME = "gradual.rollout/cache_check"


def args(server, user="admin", **extra):
    out = {"redis_host": "127.0.0.1", "redis_port": server.port, "redis_username": user,
           "redis_password": server.admin_password if user == "admin" else server.app_password}
    out.update(extra)
    return out


def run_during_window(server, module_args, scripted, check=False):
    """Start cache_check, wait until its first INFO sample is taken (CLIENT LIST shows the module's
    connection with cmd=info), run SCRIPTED inside the window, return the module's result."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(run_module("cache_check", module_args, check=check)))
    thread.start()
    admin = server.client("admin")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        mine = [c for c in admin.client_list() if c.get("name") == CLIENT_NAME]
        if mine and mine[0].get("cmd") == "info":
            break
        time.sleep(0.02)
    else:
        raise AssertionError("cache_check never took its first sample")
    scripted(server.client("app"))
    thread.join(120)
    return result


def hit_miss_pattern(app):
    app.set("goalgpt:standings:39:overall", "{}")
    for _hit in range(7):
        assert app.get("goalgpt:standings:39:overall") == "{}"  # hit
    for key in ("goalgpt:standings:40:overall", "goalgpt:h2h:1", "goalgpt:h2h:2"):
        assert app.get(key) is None  # miss


def test_hit_rate_of_a_scripted_pattern_fails_a_high_threshold(redis_server):
    res = run_during_window(redis_server, args(redis_server, duration=4, min_hit_rate=80),
                            hit_miss_pattern)
    assert res.get("failed") is True
    assert (res["hits"], res["misses"], res["lookups"], res["hit_rate"]) == (7, 3, 10, 70.0)
    assert "hit_rate 70% is below min_hit_rate 80%" in res["msg"]
    assert res["sample_count"] == 2


def test_hit_rate_passes_a_lower_threshold_in_check_mode(redis_server):
    res = run_during_window(redis_server, args(redis_server, duration=4, min_hit_rate=60,
                                               max_used_memory="64mb", max_evicted=0),
                            hit_miss_pattern, check=True)
    assert res["rc"] == 0 and res["gate"]["passed"] is True, res.get("msg")
    assert res["hit_rate"] == 70.0 and res["evicted_keys"] == 0
    assert 0 < res["used_memory"] < 64 * 1024 * 1024 and res["maxmemory"] == 64 * 1024 * 1024


def test_no_lookups_is_inconclusive(redis_server):
    res = run_module("cache_check", args(redis_server, duration=0.3, min_hit_rate=80))
    assert res.get("failed") is True and res["inconclusive"] is True and res["hit_rate"] is None
    assert "fewer than min_lookups 1" in res["msg"]
    res = run_module("cache_check", args(redis_server, duration=0.3, min_hit_rate=80,
                                         fail_on_inconclusive=False))
    assert res["rc"] == 0 and res["inconclusive"] is True


def test_used_memory_over_limit_fails_with_the_figure(redis_server):
    res = run_module("cache_check", args(redis_server, duration="200ms", max_used_memory="1kb"))
    assert res.get("failed") is True and res["used_memory_max"] > 1024
    assert f"used_memory_max {res['used_memory_max']} bytes exceeds max_used_memory 1024 bytes" in res["msg"]


def test_evictions_in_the_window_fail(redis_server):
    admin = redis_server.client("admin")
    admin.flushall()
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", str(used + 2 * 1024 * 1024))
    try:
        def fill(app):
            pipe = app.pipeline(transaction=False)
            for i in range(80):
                pipe.set(f"fill:{i}", "x" * 65536)
            pipe.execute()

        res = run_during_window(redis_server, args(redis_server, duration=3, max_evicted=0), fill)
    finally:
        admin.config_set("maxmemory", "64mb")
        admin.flushall()
    assert res.get("failed") is True and res["evicted_keys"] > 0
    assert f"evicted_keys {res['evicted_keys']} exceeds max_evicted 0" in res["msg"]


def test_key_count_by_scan(redis_server):
    admin = redis_server.client("admin")
    admin.flushall()
    admin.mset({f"goalgpt:standings:{i}:overall": "{}" for i in range(1, 26)})
    admin.mset({f"goalgpt:h2h:{i}": "{}" for i in range(10)})
    res = run_module("cache_check", args(redis_server, duration=0.2, key_pattern="goalgpt:standings:*",
                                         scan_count=7, min_key_count=1, max_key_count=1000))
    assert res["rc"] == 0 and res["key_count"] == 25, res.get("msg")
    res = run_module("cache_check", args(redis_server, duration=0.2, key_pattern="goalgpt:*",
                                         max_key_count=30))
    assert res.get("failed") and res["key_count"] == 35 and "key_count 35 exceeds max_key_count 30" in res["msg"]
    admin.flushall()


def test_app_user_without_info_right_fails_clearly(redis_server):
    res = run_module("cache_check", args(redis_server, user="app", duration=0.2))
    assert res.get("failed") is True
    assert "may not run INFO" in res["msg"] and "+info" in res["msg"]


@pytest.mark.parametrize("extra, message", [
    ({"duration": 0}, "duration=0 must be > 0"),
    ({"duration": "soon"}, "duration='soon' is not a duration"),
    ({"max_used_memory": "lots"}, "max_used_memory='lots' is not a size"),
    ({"min_hit_rate": 180}, "min_hit_rate=180.0 must be a percentage"),
    ({"min_key_count": 3}, "need key_pattern"),
    ({"redis_password": "wrong-secret"}, "refused the credentials"),
])
def test_bad_input_fails_clearly(redis_server, extra, message):
    res = run_module("cache_check", args(redis_server, **extra))
    assert res.get("failed") is True and message in res["msg"], res.get("msg")
    assert "wrong-secret" not in res["msg"]


def test_unreachable_redis_fails_clearly():
    res = run_module("cache_check", {"redis_host": "127.0.0.1", "redis_port": 9, "redis_timeout": 2})
    assert res.get("failed") is True and "cannot connect to Redis at default@127.0.0.1:9/0" in res["msg"]


def self_signed(folder):
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """A second Redis that speaks only TLS (port 0 = no plain port), with an ACL user."""
    folder = tmp_path_factory.mktemp("redis-tls")
    cert, key = self_signed(folder)
    port = services.free_port()
    (folder / "redis.conf").write_text(
        f"bind 127.0.0.1\nport 0\ntls-port {port}\ntls-cert-file {cert}\ntls-key-file {key}\n"
        f"tls-ca-cert-file {cert}\ntls-auth-clients no\ndir {folder}\nsave \"\"\n"
        "user default off\nuser monitor on >gr-tls-monitor ~* &* +@all\n")
    proc = subprocess.Popen(["redis-server", str(folder / "redis.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    services.wait_port(port, proc=proc)
    yield {"port": port, "cert": str(cert)}
    proc.terminate()
    proc.wait(10)


def test_tls_with_ca_passes_and_without_trust_fails(tls_redis):
    base = {"redis_host": "127.0.0.1", "redis_port": tls_redis["port"], "redis_username": "monitor",
            "redis_password": "gr-tls-monitor", "redis_tls": True, "duration": 0.2}
    res = run_module("cache_check", dict(base, redis_ca_cert=tls_redis["cert"], max_used_memory="1gb"))
    assert res["rc"] == 0 and res["used_memory"] > 0, res.get("msg")
    res = run_module("cache_check", base)  # the self-signed certificate is not trusted by default
    assert res.get("failed") and "cannot connect to Redis at monitor@127.0.0.1" in res["msg"]
    assert "(tls)" in res["msg"] and "certificate" in res["msg"].lower()
    res = run_module("cache_check", dict(base, redis_validate_certs=False))
    assert res["rc"] == 0, res.get("msg")
    res = run_module("cache_check", dict(base, redis_tls=False, redis_timeout=2))
    assert res.get("failed") and "cannot connect to Redis" in res["msg"]
