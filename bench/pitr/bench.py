"""bench/pitr: point-in-time recovery with pgBackRest, measured on the backup scenario's containers
(molecule/backup: gr-backup-db1 is the primary and runs the drill, gr-backup-repo1 holds the
repository). Writes bench/results/pitr.json.

1. RPO under a steady write load: a writer commits a timestamped row every BENCH_PITR_INTERVAL s
   (0.5) for BENCH_PITR_WRITE_S s (200) with archive_timeout = 60 s (the role's default; set with
   ALTER SYSTEM for the run when the scenario has another value). Two figures:
   - exposure: every second, what a primary lost at that moment would take with it, i.e. the age
     of the newest row whose WAL is already in the repository (pg_stat_archiver's last archived
     segment against the LSN each row records; a row's LSN is taken before its own record, so a
     row may count as archived one write interval early). This is what archive_timeout bounds.
   - drill: BENCH_PITR_SAMPLES (3) moments of the load taken as "the primary was lost here", each
     recovered with playbooks/restore_drill.yml (backup_drill_target_time) after the load; the
     drill's rpo_s is the target minus the last transaction replayed (its archiving of the current
     WAL first means this is the precision of recovery to a time, not the exposure above).
2. Backups of a ~1 GB database (pgbench -i -s BENCH_PITR_SCALE, 70): a full pgBackRest backup, a
   differential one after BENCH_PITR_CHURN_S s (20) of pgbench writes, and the role's pg_dump run
   (/usr/local/sbin/gradual-pg-backup) of the same data; wall time and sizes (pgbackrest info).
3. RTO of that cluster: the drill to "now" (restore of the newest backup plus recovery).

The host's load average before and after is recorded: the lab shares the machine.
"""
from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DB = "gr-backup-db1"
REPO = "gr-backup-repo1"
STANZA = "main"
BENCH_DB = "pitr_bench"
WRITES = "gradual_bench_pitr_writes"
INTERVAL = float(os.environ.get("BENCH_PITR_INTERVAL", "0.5"))
WRITE_S = float(os.environ.get("BENCH_PITR_WRITE_S", "200"))
SAMPLES = int(os.environ.get("BENCH_PITR_SAMPLES", "3"))
SCALE = int(os.environ.get("BENCH_PITR_SCALE", "70"))
CHURN_S = int(os.environ.get("BENCH_PITR_CHURN_S", "20"))
SEG = 16 * 1024 * 1024


def log(msg: str) -> None:
    print(f"bench/pitr: {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def sh(container: str, *argv: str, user: str = "postgres", timeout: float = 1800, check: bool = True) -> str:
    res = subprocess.run(["docker", "exec", "-u", user, container, *argv], capture_output=True, text=True,
                         timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{container}: {' '.join(argv)}: exit {res.returncode}: {res.stderr.strip()[-600:]}")
    return res.stdout


def sql(query: str, db: str = "postgres") -> str:
    return sh(DB, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", query).strip()


def timed(container: str, *argv: str, **kw) -> tuple[float, str]:
    t0 = time.monotonic()
    out = sh(container, *argv, **kw)
    return round(time.monotonic() - t0, 2), out


def running(name: str) -> bool:
    res = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True,
                         check=False)
    return res.stdout.strip() == "true"


def molecule(cmd: str) -> None:
    log(f"molecule {cmd} -s backup")
    subprocess.run(["molecule", cmd, "-s", "backup"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def inventory(tmp: Path) -> Path:
    """The scenario's hosts, groups and inventory group_vars, as molecule gives them to its tests."""
    spec = yaml.safe_load((ROOT / "molecule" / "backup" / "molecule.yml").read_text())
    groups: dict = {}
    for p in spec["platforms"]:
        for g in p.get("groups", []):
            groups.setdefault(g, {"hosts": {}})["hosts"][p["name"]] = {}
    for g, gv in spec["provisioner"]["inventory"].get("group_vars", {}).items():
        groups.setdefault(g, {"hosts": {}})["vars"] = gv
    inv = {"all": {"vars": {"ansible_connection": "community.docker.docker"}, "children": groups}}
    path = tmp / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def drill(inv: Path, target: str | None) -> dict:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"),
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_SHOW_CUSTOM_STATS="true")
    cmd = ["ansible-playbook", "-i", str(inv), str(ROOT / "playbooks" / "restore_drill.yml"),
           "-e", "backup_drill_method=pgbackrest"]
    if target:
        cmd += ["-e", json.dumps({"backup_drill_target_time": target})]
    t0 = time.monotonic()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    wall = round(time.monotonic() - t0, 2)
    try:
        # ansible.cfg's profile_tasks prints around the JSON document: read the document alone.
        doc = json.JSONDecoder().raw_decode(res.stdout[re.search(r"^\{", res.stdout, re.M).start():])[0]
    except (ValueError, AttributeError) as exc:
        raise RuntimeError(f"restore drill (rc {res.returncode}): {res.stdout[-1500:]} {res.stderr[-800:]}") from exc
    failed = [t["hosts"][DB].get("msg") for p in doc["plays"] for t in p["tasks"] if t["hosts"].get(DB, {}).get("failed")]
    # set_stats without per_host: the callback files the drill's report under global_custom_stats.
    report = doc.get("global_custom_stats", {}).get("restore_drill", {}).get(DB)
    if res.returncode != 0 or report is None:
        raise RuntimeError(f"restore drill to {target or 'now'} failed (rc {res.returncode}): {failed} {report}")
    keep = ("target", "replayed_to", "rpo_s", "restore_s", "recovery_s", "rto_s")
    out = {k: report[k] for k in keep}
    for k in ("rpo_s", "restore_s", "recovery_s", "rto_s"):
        out[k] = None if out[k] in (None, "None", "") else float(out[k])
    out["markers_ok"] = not report["missing"] and not report["unexpected"]
    out["playbook_wall_s"] = wall
    return out


def info() -> dict:
    return json.loads(sh(REPO, "pgbackrest", f"--stanza={STANZA}", "--output=json", "info"))[0]


def backup(kind: str) -> dict:
    log(f"pgbackrest {kind} backup")
    wall = timed(REPO, "pgbackrest", f"--stanza={STANZA}", f"--type={kind}", "backup")[0]
    b = info()["backup"][-1]
    assert b["type"] == kind, b
    return {
        "label": b["label"],
        "wall_s": wall,
        "pgbackrest_s": b["timestamp"]["stop"] - b["timestamp"]["start"],
        "database_bytes": b["info"]["size"],
        "copied_bytes": b["info"]["delta"],
        "repo_bytes": b["info"]["repository"]["size"],
        "repo_stored_bytes": b["info"]["repository"]["delta"],
    }


def segment_end(walfile: str) -> str | None:
    """The LSN just past a WAL segment's end, as pg_lsn text. A backup history file
    (<segment>.<offset>.backup) counts as its segment (its own may still be on the way, so this
    errs towards a larger exposure); None for a timeline history file."""
    walfile = (walfile or "")[:24]
    if not re.fullmatch(r"[0-9A-F]{24}", walfile):
        return None
    end = (int(walfile[8:16], 16) << 32) + (int(walfile[16:24], 16) + 1) * SEG
    return f"{end >> 32:X}/{end & 0xFFFFFFFF:X}"


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def rpo_phase(inv: Path) -> dict:
    sql(f"DROP TABLE IF EXISTS {WRITES}")
    sql(f"CREATE TABLE {WRITES} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(),"
        " lsn pg_lsn NOT NULL DEFAULT pg_current_wal_insert_lsn())")
    writer = subprocess.Popen(["docker", "exec", "-i", "-u", "postgres", DB, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
                               "-d", "postgres"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    stop = threading.Event()
    written = {"n": 0}

    def write():
        nxt = time.monotonic()
        while not stop.is_set():
            writer.stdin.write(f"INSERT INTO {WRITES} DEFAULT VALUES;\n")
            writer.stdin.flush()
            written["n"] += 1
            nxt += INTERVAL
            time.sleep(max(0.0, nxt - time.monotonic()))

    thread = threading.Thread(target=write, daemon=True)
    log(f"writer: one row every {INTERVAL} s for {WRITE_S:.0f} s")
    t_start = time.monotonic()
    thread.start()
    rng = random.Random()
    # Loss moments spread over the load (away from its first seconds), at a random fraction of a second.
    loss_at = sorted(t_start + WRITE_S * (i + 0.6) / (SAMPLES + 0.5) + rng.random() for i in range(SAMPLES))
    targets, exposure = [], []
    while time.monotonic() - t_start < WRITE_S:
        row = sql("SELECT extract(epoch FROM clock_timestamp())::float8, coalesce(last_archived_wal, '')"
                  " FROM pg_stat_archiver").split("|")
        now, end = float(row[0]), segment_end(row[1])
        if end:
            last = sql(f"SELECT extract(epoch FROM max(at))::float8 FROM {WRITES} WHERE lsn < '{end}'")
            # Before the first switch no row is archived: the exposure is then the load's age.
            first = sql(f"SELECT extract(epoch FROM min(at))::float8 FROM {WRITES}")
            if last:
                exposure.append(round(now - float(last), 2))
            elif first:
                exposure.append(round(now - float(first), 2))
        while loss_at and time.monotonic() >= loss_at[0]:
            loss_at.pop(0)
            targets.append(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00"))
            log(f"loss moment {targets[-1]}")
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t_start) % 1.0))
    stop.set()
    thread.join(5)
    writer.stdin.close()
    writer.wait(30)
    rows = int(sql(f"SELECT count(*) FROM {WRITES}"))
    switches = sql("SELECT archived_count FROM pg_stat_archiver")
    samples = []
    for t in targets:
        log(f"restore drill to {t}")
        samples.append(drill(inv, t))
    rpos = [s["rpo_s"] for s in samples if s["rpo_s"] is not None]
    return {
        "archive_timeout": sql("SHOW archive_timeout"),
        "write_interval_s": INTERVAL,
        "write_s": WRITE_S,
        "rows_written": rows,
        "archived_count_after": int(switches),
        "exposure_if_primary_lost": {
            "samples": len(exposure),
            "median_s": round(statistics.median(exposure), 2) if exposure else None,
            "p90_s": percentile(exposure, 0.9) if exposure else None,
            "max_s": max(exposure) if exposure else None,
            "min_s": min(exposure) if exposure else None,
            "series_s": exposure,
        },
        "drill_samples": samples,
        "drill_rpo_s": {"median": round(statistics.median(rpos), 3) if rpos else None, "max": max(rpos) if rpos else None},
    }


def main() -> int:
    load_before = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    converged = False
    if not running(DB):
        molecule("converge")
        converged = True
    started = time.monotonic()
    result: dict = {"benchmark": "pitr", "load_before": load_before}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pitr-") as tmp:
            inv = inventory(Path(tmp))
            result["pgbackrest_version"] = sh(REPO, "pgbackrest", "version").strip()
            result["postgresql_version"] = sql("SHOW server_version")
            timeout_was = sql("SHOW archive_timeout")
            if timeout_was != "1min":
                log(f"archive_timeout is {timeout_was}: 60 s for the run")
                sql("ALTER SYSTEM SET archive_timeout = '60s'")
                sql("SELECT pg_reload_conf()")
            result["archive_timeout_scenario"] = timeout_was
            # The drill needs a backup older than its targets.
            result["backup_before_load"] = backup("full")
            result["rpo"] = rpo_phase(inv)

            sql(f"DROP DATABASE IF EXISTS {BENCH_DB}")
            sql(f"CREATE DATABASE {BENCH_DB}")
            log(f"pgbench -i -s {SCALE}")
            init_s = timed(DB, "/usr/lib/postgresql/15/bin/pgbench", "-i", "-q", "-s", str(SCALE), BENCH_DB)[0]
            db_bytes = int(sql(f"SELECT pg_database_size('{BENCH_DB}')"))
            cluster_bytes = int(sql("SELECT sum(pg_database_size(oid)) FROM pg_database"))
            full = backup("full")
            log(f"pgbench -T {CHURN_S} (churn before the differential backup)")
            churn = sh(DB, "/usr/lib/postgresql/15/bin/pgbench", "-T", str(CHURN_S), "-c", "2", "-j", "1", BENCH_DB)
            tps = re.search(r"tps = ([0-9.]+)", churn)
            diff = backup("diff")
            log("the role's pg_dump run")
            dump_s, dump_out = timed(DB, "/usr/local/sbin/gradual-pg-backup")
            files = [f for f in dump_out.split() if f.startswith("/")]
            sizes = {}
            for f in files:
                sizes[f] = int(sh(DB, "stat", "-c", "%s", f).strip())
            bench_dump = [f for f in files if f"/{BENCH_DB}_" in f and f.endswith(".dump")]
            result["backups_1gb"] = {
                "pgbench_scale": SCALE,
                "pgbench_init_s": init_s,
                "database_bytes": db_bytes,
                "cluster_bytes": cluster_bytes,
                "pgbackrest_full": full,
                "churn_before_diff": {"pgbench_s": CHURN_S, "tps": float(tps.group(1)) if tps else None},
                "pgbackrest_diff": diff,
                "pg_dump_role_run": {
                    "wall_s": dump_s,
                    "note": "gradual-pg-backup: pg_dump -Fc of every database, globals, sha256, pg_restore --list",
                    "bench_db_dump_bytes": sizes[bench_dump[0]] if bench_dump else None,
                    "files": sizes,
                },
                "repository_bytes": int(sh(REPO, "du", "-sb", "/var/lib/pgbackrest").split()[0]),
            }
            log("restore drill to now (RTO of the ~1 GB cluster)")
            result["rto_1gb"] = drill(inv, None)
            if timeout_was != "1min":
                sql("ALTER SYSTEM RESET archive_timeout")
                sql("SELECT pg_reload_conf()")
            sh(DB, "sh", "-c", f"rm -f /var/backups/postgresql/{BENCH_DB}/*")
            sql(f"DROP DATABASE IF EXISTS {BENCH_DB}")
            sql(f"DROP TABLE IF EXISTS {WRITES}")
    finally:
        result["bench_wall_s"] = round(time.monotonic() - started, 1)
        result["load_after"] = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
        if converged and not os.environ.get("BENCH_PITR_KEEP"):
            molecule("destroy")
    out = ROOT / "bench" / "results" / "pitr.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = all(s["markers_ok"] for s in result["rpo"]["drill_samples"]) and result["rto_1gb"]["markers_ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
