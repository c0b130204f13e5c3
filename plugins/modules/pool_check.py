#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate on connection pool utilisation read from PostgreSQL, PgBouncer or an HTTP endpoint."""
from __future__ import annotations

DOCUMENTATION = r"""
module: pool_check
short_description: Gate a rollout on connection pool utilisation and waiting clients
version_added: 0.1.0
description:
  - Samples a connection pool for O(duration) every O(interval) and fails when the utilisation or
    the number of waiting clients goes over a threshold.
  - V(postgres) counts client backends in C(pg_stat_activity) against C(max_connections) minus the
    reserved slots, and reports sessions idle in a transaction and their age. One query per sample.
    The login role needs C(pg_monitor) (or superuser) to see other roles' sessions.
  - V(pgbouncer) reads C(SHOW POOLS) on the admin console (database C(pgbouncer), simple protocol,
    autocommit); utilisation is C(sv_active) against the pool size from C(SHOW DATABASES), waiting
    is C(cl_waiting). One command per sample (C(SHOW DATABASES) once, and again only when a new
    pool appears). The login role must be in C(admin_users) or C(stats_users).
  - V(http) GETs a JSON document such as the app's C(/health/pool) and picks the figures with
    JMESPath expressions (O(fields)). One request per sample, on a kept-alive connection.
options:
  source:
    description:
      - Where the pool figures come from.
    type: str
    required: true
    choices: [postgres, pgbouncer, http]
  pool_database:
    description:
      - V(pgbouncer) only. Sum only the pools of this database (default all but C(pgbouncer)).
    type: str
  pool_user:
    description:
      - V(pgbouncer) only. Sum only the pools of this user.
    type: str
  url:
    description:
      - V(http) only. URL of the JSON pool endpoint.
    type: str
  fields:
    description:
      - V(http) only. JMESPath expression per figure, evaluated on the JSON body. Keys are
        C(active), C(idle), C(waiting), C(total), C(utilization); each defaults to the key of the
        same name. When C(utilization) yields nothing it is computed as C(active / total * 100).
    type: dict
  headers:
    description:
      - V(http) only. Extra request headers (for example an C(Authorization) token).
    type: dict
  timeout:
    description:
      - V(http) only. Seconds to wait for each response.
    type: float
    default: 10.0
  validate_certs:
    description:
      - V(http) only. Verify the server certificate of an https URL.
    type: bool
    default: true
  min_samples:
    description:
      - Fewer successful samples than this makes the result inconclusive.
    type: int
    default: 1
  max_utilization:
    description:
      - Highest acceptable utilisation in percent, compared with the highest sample.
    type: float
  max_waiting:
    description:
      - Highest acceptable number of waiting clients (C(cl_waiting) for PgBouncer, sessions waiting
        on a lock for PostgreSQL, C(waiting) for http) in any sample.
    type: int
  max_idle_in_transaction:
    description:
      - V(postgres) only. Highest acceptable number of sessions idle in a transaction.
    type: int
extends_documentation_fragment:
  - community.postgresql.postgres
  - gradual.rollout.postgres
  - gradual.rollout.gate
  - gradual.rollout.gate.verdict
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: A gate only reads; it samples the live pool in check mode too.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
notes:
  - The module is in the C(gradual.rollout.postgres) action group, so C(module_defaults) for
    C(group/gradual.rollout.postgres) (the application database's login, usually) applies to it.
    With V(pgbouncer) the login is PgBouncer's admin console, not the database's, so give O(db),
    O(login_user), O(login_port) and the other C(login_*) options explicitly in the task; explicit
    task arguments override C(module_defaults).
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: The app's pool stays under 50% for two hours after a concurrency change
  gradual.rollout.pool_check:
    source: http
    url: http://localhost:3000/health/pool
    duration: 2h
    interval: 30s
    min_samples: 200
    max_utilization: 50
    max_waiting: 0

- name: PgBouncer pools of the app database are not saturated
  gradual.rollout.pool_check:
    source: pgbouncer
    login_host: 127.0.0.1
    login_port: 6432
    login_user: pgbouncer_stats
    login_password: "{{ vault_pgbouncer_stats_password }}"
    pool_database: app
    duration: 60
    interval: 5
    max_utilization: 80
    max_waiting: 0

- name: PostgreSQL connection slots
  gradual.rollout.pool_check:
    source: postgres
    login_host: db1.internal
    login_user: monitor
    login_password: "{{ vault_monitor_password }}"
    max_utilization: 70
    max_idle_in_transaction: 5
"""

RETURN = r"""
utilization_max:
  description: Highest utilisation seen, percent.
  returned: always
  type: float
  sample: 45.0
utilization_mean:
  description: Mean utilisation over the samples, percent.
  returned: always
  type: float
  sample: 38.2
utilization_p95:
  description: 95th percentile (nearest rank) of the utilisation samples, percent.
  returned: always
  type: float
  sample: 44.0
waiting_max:
  description: Most waiting clients in one sample.
  returned: always
  type: int
  sample: 0
idle_in_transaction_max:
  description: V(postgres) only. Most sessions idle in a transaction in one sample.
  returned: when source is postgres
  type: int
idle_in_transaction_age_max:
  description: V(postgres) only. Longest time a session sat idle in a transaction, seconds.
  returned: when source is postgres
  type: float
maxwait_max:
  description: V(pgbouncer) only. Longest wait of a client for a server connection, seconds.
  returned: when source is pgbouncer
  type: float
sample_count:
  description: Successful samples.
  returned: always
  type: int
samples:
  description: Every sample, with its offset C(t) in seconds and its figures, or its C(error).
  returned: always
  type: list
  elements: dict
  sample: [{"t": 0.0, "utilization": 40.0, "active": 8, "idle": 12, "waiting": 0, "total": 20}]
inconclusive:
  description: Too few samples succeeded to judge (see O(min_samples)).
  returned: always
  type: bool
gate:
  description: The verdict.
  returned: always
  type: dict
  sample: {"passed": false, "reason": "utilization_max 95% exceeds max_utilization 50%", "failures": []}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.module_utils.http_probe import Prober, Target, fetch_json
from ansible_collections.gradual.rollout.plugins.module_utils.pg import (
    conn_params, pg_argument_spec, pg_connect)

try:
    import psycopg2
except ImportError:
    psycopg2 = None  # pg_connect reports the missing library

try:
    import jmespath
    HAS_JMESPATH = True
    JMESPATH_ERROR = None
except ImportError:
    jmespath = None
    HAS_JMESPATH = False
    JMESPATH_ERROR = traceback.format_exc()

FIELDS = ("active", "idle", "waiting", "total", "utilization")

PG_SAMPLE_SQL = """
SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS clients,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active') AS active,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'idle') AS idle,
       count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS idle_in_transaction,
       coalesce(extract(epoch FROM max(now() - state_change)
                FILTER (WHERE state LIKE 'idle in transaction%')), 0)::float8 AS idle_in_transaction_age,
       count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting,
       current_setting('max_connections')::int
         - current_setting('superuser_reserved_connections')::int
         - coalesce(current_setting('reserved_connections', true)::int, 0) AS capacity
FROM pg_stat_activity WHERE pid <> pg_backend_pid()
"""


class _Reconnecting:
    """A sample after a lost connection (server restart, PgBouncer RELOAD) reconnects instead of
    failing every remaining sample of a long watch."""

    conn = None
    params: dict = {}

    def _live(self):
        if self.conn is None or self.conn.closed:
            self.conn = psycopg2.connect(**self.params)
            self.conn.autocommit = True
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()


class PostgresSampler(_Reconnecting):
    """One pg_stat_activity query per sample on an autocommit connection (fresh statistics)."""

    def __init__(self, module):
        self.module = module
        self.params = conn_params(module)
        self.conn = pg_connect(module, autocommit=True, params=self.params)

    def take(self) -> dict:
        with self._live().cursor() as cur:
            cur.execute(PG_SAMPLE_SQL)
            clients, active, idle, iit, iit_age, waiting, capacity = cur.fetchone()
        return {"utilization": round(100.0 * clients / capacity, 2) if capacity > 0 else None,
                "clients": clients, "active": active, "idle": idle, "waiting": waiting,
                "total": capacity, "idle_in_transaction": iit,
                "idle_in_transaction_age": round(iit_age, 3)}


class PgBouncerSampler(_Reconnecting):
    """SHOW POOLS per sample on the admin console; SHOW DATABASES for the pool sizes."""

    def __init__(self, module):
        self.module = module
        params = conn_params(module)
        params["dbname"] = "pgbouncer"
        params.pop("application_name", None)  # the admin console rejects unknown startup params
        self.params = params
        self.conn = pg_connect(module, autocommit=True, params=params)
        self.sizes = self._pool_sizes()

    def _rows(self, command: str) -> list:
        with self._live().cursor() as cur:
            cur.execute(command)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def _pool_sizes(self) -> dict:
        return {r["name"]: r.get("pool_size") or 0 for r in self._rows("SHOW DATABASES")}

    def take(self) -> dict:
        pools = self._rows("SHOW POOLS")
        if any(p["database"] not in self.sizes for p in pools):
            self.sizes = self._pool_sizes()
        p = self.module.params
        return G.pgbouncer_figures(pools, self.sizes, p["pool_database"], p["pool_user"])


class HttpSampler:
    """One GET per sample; figures picked from the JSON body with JMESPath."""

    def __init__(self, module):
        p = module.params
        if not HAS_JMESPATH:
            module.fail_json(msg=missing_required_lib("jmespath"), exception=JMESPATH_ERROR)
        try:
            target = Target(p["url"])
        except ValueError as exc:
            module.fail_json(msg="%s; give the full URL of the pool endpoint, e.g. "
                             "http://localhost:3000/health/pool" % exc)
        unknown = sorted(set(p["fields"] or {}) - set(FIELDS))
        if unknown:
            module.fail_json(msg="fields has unknown key(s) %s; use %s" % (", ".join(unknown), ", ".join(FIELDS)))
        self.exprs = {}
        for name in FIELDS:
            expr = (p["fields"] or {}).get(name, name)
            try:
                self.exprs[name] = jmespath.compile(expr)
            except jmespath.exceptions.JMESPathError as exc:
                module.fail_json(msg="fields.%s=%r is not a JMESPath expression: %s" % (name, expr, exc))
        self.headers = p["headers"] or {}
        self.prober = Prober(target, p["timeout"], p["validate_certs"])

    def take(self) -> dict:
        doc = fetch_json(self.prober, self.headers)
        out = {}
        for name, expr in self.exprs.items():
            value = expr.search(doc)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError("field %s = %r is not a number" % (name, value))
            out[name] = value
        if out["utilization"] is None and out["active"] is not None and out["total"]:
            out["utilization"] = round(100.0 * out["active"] / out["total"], 2)
        if out["utilization"] is None:
            raise ValueError("the body gives neither utilization nor active and total; set fields")
        return out

    def close(self):
        self.prober.close()


def check_source_options(module) -> None:
    p = module.params
    if p["source"] != "http":
        for name in ("url", "fields", "headers"):
            if p[name]:
                module.fail_json(msg="%s is only used with source: http (source is %s); remove it"
                                 % (name, p["source"]))
    if p["source"] != "pgbouncer":
        for name in ("pool_database", "pool_user"):
            if p[name]:
                module.fail_json(msg="%s is only used with source: pgbouncer; remove it" % name)
    if p["min_samples"] < 1:
        module.fail_json(msg="min_samples=%d must be at least 1" % p["min_samples"])
    for name in ("max_utilization", "max_waiting", "max_idle_in_transaction"):
        if p[name] is not None and p[name] < 0:
            module.fail_json(msg="%s=%s must be >= 0" % (name, p[name]))


def figures(samples: list, source: str) -> dict:
    good = [s["value"] for s in samples if "value" in s]
    util = G.summarize([s.get("utilization") for s in good])
    out = {"utilization_max": util["max"], "utilization_mean": util["mean"],
           "utilization_p95": util["p95"],
           "waiting_max": max([s.get("waiting") or 0 for s in good], default=None),
           "sample_count": len(good)}
    if source == "postgres":
        out["idle_in_transaction_max"] = max([s["idle_in_transaction"] for s in good], default=None)
        out["idle_in_transaction_age_max"] = max([s["idle_in_transaction_age"] for s in good], default=None)
    if source == "pgbouncer":
        out["maxwait_max"] = max([s["maxwait_s"] for s in good], default=None)
    return out


def verdict(module, out: dict) -> dict:
    p = module.params
    inconclusive = None
    if out["sample_count"] < p["min_samples"]:
        inconclusive = "%d successful sample(s), fewer than min_samples %d" % (out["sample_count"], p["min_samples"])
    return G.gate([
        G.check_max("utilization_max", out["utilization_max"], "max_utilization", p["max_utilization"], "%"),
        G.check_max("waiting_max", out["waiting_max"], "max_waiting", p["max_waiting"]),
        G.check_max("idle_in_transaction_max", out.get("idle_in_transaction_max"),
                    "max_idle_in_transaction", p["max_idle_in_transaction"]),
    ], inconclusive)


def argument_spec() -> dict:
    spec = pg_argument_spec()
    spec.update(
        source=dict(type="str", required=True, choices=["postgres", "pgbouncer", "http"]),
        pool_database=dict(type="str"), pool_user=dict(type="str"),
        url=dict(type="str"), fields=dict(type="dict"), headers=dict(type="dict"),
        timeout=dict(type="float", default=10.0), validate_certs=dict(type="bool", default=True),
        duration=dict(type="raw"), interval=dict(type="raw"),
        min_samples=dict(type="int", default=1),
        max_utilization=dict(type="float"), max_waiting=dict(type="int"),
        max_idle_in_transaction=dict(type="int"),
    )
    spec.update(G.verdict_argument_spec())
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[["source", "http", ["url"]]])
    p = module.params
    check_source_options(module)
    try:
        duration = G.parse_duration(p["duration"] if p["duration"] is not None else 0, "duration")
        interval = G.parse_duration(p["interval"] if p["interval"] is not None else 5, "interval")
    except G.GateInputError as exc:
        module.fail_json(msg=str(exc))
    sampler = {"postgres": PostgresSampler, "pgbouncer": PgBouncerSampler,
               "http": HttpSampler}[p["source"]](module)
    try:
        samples = G.run_samples(sampler.take, duration, interval, fail_first=True)
    except Exception as exc:  # pylint: disable=broad-except  # the first sample failing is an input error
        module.fail_json(msg="pool_check could not read the %s pool figures: %s"
                         % (p["source"], to_native(exc).strip()))
    finally:
        sampler.close()
    out = figures(samples, p["source"])
    out["gate"] = verdict(module, out)
    out["inconclusive"] = out["gate"]["inconclusive"]
    out["samples"] = [dict({"t": s["t"]}, **s["value"]) if "value" in s else s for s in samples]
    out["source"] = p["source"]
    if G.fails_task(out, p["fail_on_inconclusive"]):
        module.fail_json(msg="pool_check gate failed: " + out["gate"]["reason"], **out)
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
