"""canary_compare's error rates on loopback HTTP servers: one canary and two baseline servers
(stdlib, each sleeping its delay before answering), loaded at once with the module's own code
(http_probe.run_load per host, in threads) and judged by canary_compare.compare.

  A/A        RUNS runs, every server at BASE_MS: a failure is a false failure (goal <= 5 %)
  regression RUNS runs, the canary at 1.5 x BASE_MS: a failure is a detection (goal >= 95 %)

Writes bench/results/canary.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "build" / "collections"))

from json_http import JsonHandler, serve  # noqa: E402
from ansible_collections.gradual.rollout.plugins.module_utils.canary_compare import compare  # noqa: E402
from ansible_collections.gradual.rollout.plugins.module_utils.http_probe import Target, run_load  # noqa: E402


def delayed(delay_s: float):
    def do_get(self):  # noqa: N802
        time.sleep(delay_s)
        self.reply(200, {"ok": True})
    return serve(type("Delayed", (JsonHandler,), {"do_GET": do_get}))


def load(urls, requests, concurrency):
    out = {}

    def one(url):
        out[url] = run_load(Target(url), timeout=5, requests=requests, concurrency=concurrency)

    threads = [threading.Thread(target=one, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def trial(canary_url, baseline_urls, args):
    raw = load([canary_url] + baseline_urls, args.requests, args.concurrency)
    b_lat = [x for u in baseline_urls for x in raw[u]["latencies_ms"]]
    b_err = sum(raw[u]["failures"] for u in baseline_urls)
    return compare(raw[canary_url]["latencies_ms"], b_lat, raw[canary_url]["failures"], b_err,
                   alpha=args.alpha, max_median_increase_ms=args.tolerance_ms)


def series(name, canary_delay, args):
    servers = [delayed(canary_delay)] + [delayed(args.base_ms / 1000.0) for _index in range(2)]
    urls = ["http://127.0.0.1:%d/health" % s.server_address[1] for s in servers]
    t0 = time.monotonic()
    failed = inconclusive = 0
    ps, diffs = [], []
    try:
        for _run in range(args.runs):
            out = trial(urls[0], urls[1:], args)
            failed += not out["passed"] and not out["inconclusive"]
            inconclusive += out["inconclusive"]
            ps.append(out["figures"].get("p"))
            diffs.append(out["figures"].get("median_diff_ms"))
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
    wall = time.monotonic() - t0
    ps_sorted = sorted(p for p in ps if p is not None)
    return {"series": name, "runs": args.runs, "canary_delay_ms": round(canary_delay * 1000, 3),
            "baseline_delay_ms": args.base_ms, "failed": failed, "inconclusive": inconclusive,
            "failure_rate_pct": round(100.0 * failed / args.runs, 1),
            "median_p": ps_sorted[len(ps_sorted) // 2] if ps_sorted else None,
            "median_diff_ms_range": [min(diffs), max(diffs)] if diffs else None,
            "wall_s": round(wall, 2), "wall_per_run_s": round(wall / args.runs, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--requests", type=int, default=40, help="requests per host")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--base-ms", type=float, default=20.0)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--tolerance-ms", type=float, default=5.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "canary.json"))
    args = ap.parse_args()
    t0 = time.monotonic()
    aa = series("A/A", args.base_ms / 1000.0, args)
    regression = series("1.5x regression", 1.5 * args.base_ms / 1000.0, args)
    result = {"benchmark": "canary_compare", "host": platform.node(), "python": platform.python_version(),
              "requests_per_host": args.requests, "concurrency_per_host": args.concurrency,
              "baseline_hosts": 2, "canary_hosts": 1, "alpha": args.alpha,
              "max_median_increase_ms": args.tolerance_ms,
              "false_failure_rate_pct": aa["failure_rate_pct"], "false_failure_goal_pct": 5,
              "detection_rate_pct": regression["failure_rate_pct"], "detection_goal_pct": 95,
              "series": [aa, regression], "wall_s": round(time.monotonic() - t0, 2)}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
