#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate on Redis cache health: hit rate over a window, memory, evictions, key count."""
from __future__ import annotations

DOCUMENTATION = r"""
module: cache_check
short_description: Gate a rollout on Redis hit rate, memory, evictions and key count
version_added: 0.1.0
description:
  - Reads C(INFO stats memory) at the start and at the end of a window of O(duration) (and every
    O(interval) between, when set). The hit rate is computed from the difference of
    C(keyspace_hits) and C(keyspace_misses) between the first and the last sample, so it is the
    rate of this window; statistics are never reset.
  - Counts the keys matching O(key_pattern) with C(SCAN) (never C(KEYS)), once, at the end.
  - Any threshold that is not met fails the task with a message naming the figure.
  - The ACL user needs C(+info) (C(INFO) is in the C(@dangerous) category) and, for O(key_pattern),
    C(+scan) and read access to the keys.
options:
  min_hit_rate:
    description:
      - Lowest acceptable hit rate in percent over the window.
    type: float
  min_lookups:
    description:
      - Fewest keyspace lookups (hits + misses) in the window for the hit rate to count; fewer make
        the result inconclusive when O(min_hit_rate) is set.
    type: int
    default: 1
  max_used_memory:
    description:
      - Highest acceptable C(used_memory) in any sample. Bytes, or a size as redis.conf writes it
        (V(500mb) = 500 MiB, V(500m) = 500,000,000 bytes, V(2gb)).
    type: raw
  max_evicted:
    description:
      - Most keys that may be evicted during the window.
    type: int
  key_pattern:
    description:
      - Glob pattern (C(SCAN MATCH)) of the keys to count, for example V(myapp:products:*).
    type: str
  scan_count:
    description:
      - C(COUNT) hint of each C(SCAN) call.
    type: int
    default: 1000
  min_key_count:
    description:
      - Fewest keys that must match O(key_pattern).
    type: int
  max_key_count:
    description:
      - Most keys that may match O(key_pattern).
    type: int
extends_documentation_fragment:
  - gradual.rollout.redis
  - gradual.rollout.gate
  - gradual.rollout.gate.verdict
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: A gate only reads; it samples the live server in check mode too.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: The product page cache is warm and small after the cache flag went on
  gradual.rollout.cache_check:
    redis_host: cache1.internal
    redis_username: monitor
    redis_password: "{{ vault_redis_monitor_password }}"
    duration: 5m
    min_hit_rate: 80
    min_lookups: 100
    max_used_memory: 500mb
    max_evicted: 0
    key_pattern: "myapp:products:*"
    min_key_count: 1
"""

RETURN = r"""
hit_rate:
  description: Percent of keyspace lookups that hit during the window; null when there was none.
  returned: always
  type: float
  sample: 87.5
lookups:
  description: Keyspace hits + misses during the window.
  returned: always
  type: int
  sample: 1200
hits:
  description: Keyspace hits during the window.
  returned: always
  type: int
misses:
  description: Keyspace misses during the window.
  returned: always
  type: int
used_memory:
  description: C(used_memory) of the last sample, bytes.
  returned: always
  type: int
  sample: 335544320
used_memory_max:
  description: Highest C(used_memory) over the samples, bytes.
  returned: always
  type: int
maxmemory:
  description: The server's C(maxmemory), bytes (0 = no limit).
  returned: always
  type: int
evicted_keys:
  description: Keys evicted during the window.
  returned: always
  type: int
  sample: 0
evicted_keys_total:
  description: C(evicted_keys) since the server started (last sample).
  returned: always
  type: int
key_count:
  description: Keys matching O(key_pattern); null without a pattern.
  returned: always
  type: int
  sample: 120
window_s:
  description: Seconds between the first and the last sample.
  returned: always
  type: float
sample_count:
  description: Successful INFO samples.
  returned: always
  type: int
inconclusive:
  description: Too few lookups in the window to judge the hit rate.
  returned: always
  type: bool
gate:
  description: The verdict.
  returned: always
  type: dict
  sample: {"passed": false, "reason": "hit_rate 62.5% is below min_hit_rate 80%", "failures": []}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.module_utils.redis_conn import (
    describe_redis, redis, redis_argument_spec, redis_connect)

INFO_KEYS = ("keyspace_hits", "keyspace_misses", "evicted_keys", "used_memory", "maxmemory")


def take_sample(client) -> dict:
    """One INFO command (two sections) → the counters the gate needs."""
    info = client.info("stats", "memory")
    return {k: int(info.get(k, 0)) for k in INFO_KEYS}


def count_keys(client, pattern: str, count: int) -> int:
    return sum(1 for _key in client.scan_iter(match=pattern, count=count))


def parse_limits(module) -> dict:
    p = module.params
    try:
        duration = G.parse_duration(p["duration"] if p["duration"] is not None else 10, "duration")
        interval = G.parse_duration(p["interval"], "interval") if p["interval"] is not None else duration
        max_mem = G.parse_size(p["max_used_memory"], "max_used_memory") \
            if p["max_used_memory"] is not None else None
    except G.GateInputError as exc:
        module.fail_json(msg=str(exc))
    if duration <= 0:
        module.fail_json(msg="duration=%r must be > 0: the hit rate needs two samples some time "
                         "apart (e.g. duration: 30s)" % (p["duration"],))
    if p["min_hit_rate"] is not None and not 0 <= p["min_hit_rate"] <= 100:
        module.fail_json(msg="min_hit_rate=%s must be a percentage between 0 and 100" % p["min_hit_rate"])
    for name in ("min_lookups", "max_evicted", "scan_count", "min_key_count", "max_key_count"):
        if p[name] is not None and p[name] < 0:
            module.fail_json(msg="%s=%s must be >= 0" % (name, p[name]))
    if (p["min_key_count"] is not None or p["max_key_count"] is not None) and not p["key_pattern"]:
        module.fail_json(msg="min_key_count / max_key_count need key_pattern (the keys to count)")
    return {"duration": duration, "interval": interval, "max_used_memory": max_mem}


def figures(samples: list) -> dict:
    good = [s for s in samples if "value" in s]
    first, last = good[0], good[-1]
    rate, lookups = G.hit_rate(first["value"], last["value"])
    return {"hit_rate": rate, "lookups": lookups,
            "hits": last["value"]["keyspace_hits"] - first["value"]["keyspace_hits"],
            "misses": last["value"]["keyspace_misses"] - first["value"]["keyspace_misses"],
            "used_memory": last["value"]["used_memory"],
            "used_memory_max": max(s["value"]["used_memory"] for s in good),
            "maxmemory": last["value"]["maxmemory"],
            "evicted_keys": last["value"]["evicted_keys"] - first["value"]["evicted_keys"],
            "evicted_keys_total": last["value"]["evicted_keys"],
            "window_s": round(last["t"] - first["t"], 3), "sample_count": len(good)}


def verdict(module, out: dict, limits: dict) -> dict:
    p = module.params
    inconclusive = None
    if p["min_hit_rate"] is not None and out["lookups"] < max(1, p["min_lookups"]):
        inconclusive = "%d keyspace lookup(s) in %ss, fewer than min_lookups %d: the hit rate " \
                       "cannot be judged" % (out["lookups"], out["window_s"], max(1, p["min_lookups"]))
    return G.gate([
        None if inconclusive else G.check_min("hit_rate", out["hit_rate"], "min_hit_rate", p["min_hit_rate"], "%"),
        G.check_max("used_memory_max", out["used_memory_max"], "max_used_memory", limits["max_used_memory"], " bytes"),
        G.check_max("evicted_keys", out["evicted_keys"], "max_evicted", p["max_evicted"]),
        G.check_min("key_count", out["key_count"], "min_key_count", p["min_key_count"]),
        G.check_max("key_count", out["key_count"], "max_key_count", p["max_key_count"]),
    ], inconclusive)


def argument_spec() -> dict:
    spec = redis_argument_spec()
    spec.update(
        duration=dict(type="raw"), interval=dict(type="raw"),
        min_hit_rate=dict(type="float"), min_lookups=dict(type="int", default=1),
        max_used_memory=dict(type="raw"), max_evicted=dict(type="int"),
        key_pattern=dict(type="str", no_log=False), scan_count=dict(type="int", default=1000),
        min_key_count=dict(type="int"), max_key_count=dict(type="int"),
    )
    spec.update(G.verdict_argument_spec())
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    limits = parse_limits(module)
    client = redis_connect(module)
    try:
        samples = G.run_samples(lambda: take_sample(client), limits["duration"], limits["interval"],
                                fail_first=True)
        if sum(1 for s in samples if "value" in s) < 2:
            module.fail_json(msg="cache_check needs two INFO samples and got %d: %s"
                             % (sum(1 for s in samples if "value" in s),
                                [s.get("error") for s in samples if "error" in s]), samples=samples)
        out = figures(samples)
        out["key_count"] = count_keys(client, p["key_pattern"], p["scan_count"]) if p["key_pattern"] else None
    except redis.exceptions.NoPermissionError as exc:
        module.fail_json(msg="Redis user %s may not run INFO/SCAN: %s; grant it +info (and +scan "
                         "for key_pattern) or use a monitoring user"
                         % (p["redis_username"] or "default", to_native(exc)))
    except G.GateInputError as exc:
        module.fail_json(msg=str(exc))
    except redis.exceptions.RedisError as exc:
        module.fail_json(msg="Redis at %s failed during sampling: %s" % (describe_redis(p), to_native(exc)))
    finally:
        client.close()
    out["gate"] = verdict(module, out, limits)
    out["inconclusive"] = out["gate"]["inconclusive"]
    if G.fails_task(out, p["fail_on_inconclusive"]):
        module.fail_json(msg="cache_check gate failed: " + out["gate"]["reason"], **out)
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
