#!/usr/bin/env python
"""bench/monitoring: what Prometheus costs on the lab's monitoring host. Reads the prometheus
process of gr-lab-mon1 from /proc every SAMPLE seconds for SECONDS: CPU (utime + stime, as a share
of one core over the window), resident memory (min, median, max), and the scrape load it carried
(targets up, samples scraped per second from Prometheus' own TSDB head counter).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("BENCH_MON_SECONDS", "600"))
SAMPLE = float(os.environ.get("BENCH_MON_SAMPLE", "10"))
HOST = "gr-lab-mon1"


def sh(cmd: str) -> str:
    return subprocess.run(["docker", "exec", HOST, "sh", "-c", cmd], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def reading(pid: str) -> tuple[float, int]:
    """(CPU seconds used so far, resident bytes) of PID."""
    fields = sh("cat /proc/%s/stat" % pid).rsplit(")", 1)[1].split()
    ticks = int(sh("getconf CLK_TCK"))
    cpu = (int(fields[11]) + int(fields[12])) / ticks   # utime, stime (fields 14, 15 of stat)
    rss_kb = int(next(line.split()[1] for line in sh("cat /proc/%s/status" % pid).splitlines()
                      if line.startswith("VmRSS:")))
    return cpu, rss_kb * 1024


def main() -> None:
    pid = sh("systemctl show -p MainPID --value prometheus")
    if pid in ("", "0"):
        raise SystemExit("prometheus is not running on %s" % HOST)
    config = sh("grep -c 'job_name' /etc/prometheus/prometheus.yml")
    cpu0 = reading(pid)[0]
    start = time.monotonic()
    rss = []
    while time.monotonic() - start < SECONDS:
        rss.append(reading(pid)[1])
        time.sleep(SAMPLE)
    cpu1, last = reading(pid)
    rss.append(last)
    elapsed = time.monotonic() - start
    mib = [r / 1048576 for r in rss]
    result = {
        "benchmark": "monitoring", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "window_s": round(elapsed, 1), "samples": len(rss), "scrape_jobs": int(config),
        "cpu_seconds": round(cpu1 - cpu0, 2), "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / elapsed, 2),
        "rss_mib": {"min": round(min(mib), 1), "median": round(statistics.median(mib), 1), "max": round(max(mib), 1)},
        "load_average": os.getloadavg(),
    }
    out = ROOT / "bench" / "results" / "monitoring.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
