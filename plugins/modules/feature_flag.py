#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Set, snapshot and restore feature flags in an env file, a PostgreSQL table or a Redis hash."""
from __future__ import annotations

DOCUMENTATION = r"""
module: feature_flag
short_description: Set and restore feature flags, with a snapshot and an audit trail
version_added: 0.1.0
description:
  - Sets feature flags in one of three stores and returns the exact prior state as RV(previous),
    which a later call passes as O(restore) to put everything back (flags that did not exist are
    removed again).
  - V(env_file) edits a C(NAME=value) file in place, the file that PM2's ecosystem file or
    systemd's C(EnvironmentFile) reads. Comments, order, quoting, owner and mode are kept and the
    write is atomic.
  - V(postgres) upserts rows of a table C(name text primary key, value jsonb, updated_at, updated_by).
  - V(redis) sets fields of a hash.
  - Every change can be audited (who, when, run id, old and new value) to a JSON-lines file and/or
    a PostgreSQL table.
options:
  backend:
    description:
      - Where the flags live.
    type: str
    required: true
    choices: [env_file, postgres, redis]
  flags:
    description:
      - Flags to set, name to value. Values are strings, integers or booleans.
      - V(env_file) and V(redis) store text (booleans as V(true) / V(false)); V(postgres) stores
        the JSON value.
      - Names for V(env_file) must be environment variable names; for the other backends 1-128
        characters from letters, digits, C(_), C(.), C(:) and C(-).
      - Exactly one of O(flags) and O(restore) is required.
    type: dict
  restore:
    description:
      - A RV(previous) value returned by an earlier call. Every flag it lists as present is set to
        exactly that value and every flag it lists as absent is removed.
    type: dict
  path:
    description:
      - The env file (V(env_file) backend). Created when missing (its folder must exist).
    type: path
  mode:
    description:
      - Mode of the env file when this module creates it; an existing file keeps its mode.
    type: raw
    default: '0640'
  table:
    description:
      - Flag table (V(postgres) backend), C(name) or C(schema.name).
    type: str
    default: feature_flags
  create_table:
    description:
      - Create O(table) when it does not exist. Without it a missing table fails the task.
    type: bool
    default: false
  key:
    description:
      - Hash that holds the flags (V(redis) backend).
    type: str
    default: feature_flags
  audit:
    description:
      - Record every change. Nothing is recorded when nothing changes or in check mode.
      - Without it, a run that changes a flag warns; a check-mode run or one that changes nothing
        does not.
    type: dict
    suboptions:
      file:
        description:
          - JSON-lines file to append to, one line per changed flag (keys C(at), C(actor),
            C(run_id), C(backend), C(target), C(flag), C(action), C(old), C(new)).
        type: path
      table:
        description:
          - PostgreSQL table to insert into, created when missing, over the connection options of
            this module. With the V(postgres) backend the audit rows and the change commit together.
        type: str
      actor:
        description:
          - Who made the change. Defaults to C(AWX_USER_NAME) or C(SUDO_USER) from the
            environment, else the user the module runs as.
        type: str
      run_id:
        description:
          - Run identifier. Defaults to C(AWX_JOB_ID), C(TOWER_JOB_ID) or C(JOB_ID) from the
            module's environment; on a remote target pass V({{ awx_job_id | default(omit) }}).
        type: str
extends_documentation_fragment:
  - community.postgresql.postgres
  - gradual.rollout.postgres
  - gradual.rollout.redis
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
notes:
  - PostgreSQL options are used by the V(postgres) backend and by O(audit.table); Redis options by
    the V(redis) backend.
  - An invalid name or value, an unreachable store or an unwritable audit target fails before
    anything is changed.
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: Turn on the new checkout and lower a worker limit (the app reads the env file at start)
  gradual.rollout.feature_flag:
    backend: env_file
    path: /etc/myapp/flags.env
    flags:
      USE_NEW_CHECKOUT: true
      WORKER_CONCURRENCY: 50
    audit:
      file: /var/log/gradual-rollout/flags.jsonl
  register: flags_set

- name: Put the flags back exactly as they were
  gradual.rollout.feature_flag:
    backend: env_file
    path: /etc/myapp/flags.env
    restore: "{{ flags_set.previous }}"

- name: Toggle a flag in the database, audited in the same transaction
  gradual.rollout.feature_flag:
    backend: postgres
    login_host: db1.internal
    login_user: rollout
    login_password: "{{ vault_rollout_db_password }}"
    db: app
    create_table: true
    flags:
      cache_product_pages: true
    audit:
      table: feature_flag_audit
      run_id: "{{ awx_job_id | default(omit) }}"

- name: Flags in a Redis hash
  gradual.rollout.feature_flag:
    backend: redis
    redis_host: cache1.internal
    redis_username: app
    redis_password: "{{ vault_redis_app_password }}"
    key: myapp:flags
    flags:
      CACHE_SEARCH: false
"""

RETURN = r"""
previous:
  description:
    - The state of the flags named by O(flags) or O(restore) before this call; pass it as O(restore).
  returned: success
  type: dict
  sample: {"backend": "env_file", "present": {"USE_REDIS_CACHE": "false"}, "absent": ["CACHE_SEARCH"]}
current:
  description: The flags set after this call (or that would be, in check mode), as the backend stores them.
  returned: success
  type: dict
  sample: {"USE_REDIS_CACHE": "true", "CACHE_SEARCH": "true"}
changes:
  description: One entry per changed flag.
  returned: success
  type: list
  elements: dict
  sample: [{"flag": "CACHE_SEARCH", "action": "create", "old": null, "new": "true"}]
target:
  description: The file, table or hash that was edited.
  returned: success
  type: str
  sample: /etc/myapp/flags.env
audited:
  description: Number of audit records written (per destination).
  returned: success
  type: dict
  sample: {"file": 2, "table": 2}
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.gradual.rollout.plugins.module_utils import flags as F
from ansible_collections.gradual.rollout.plugins.module_utils.pg import pg_argument_spec, pg_connect
from ansible_collections.gradual.rollout.plugins.module_utils.redis_conn import (
    redis_argument_spec, redis_connect)

try:
    from psycopg2 import sql as pgsql
    import psycopg2
    HAS_PSYCOPG2 = True
    PSYCOPG2_ERROR = None
except ImportError:
    pgsql = psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_ERROR = traceback.format_exc()

try:
    import redis
    HAS_REDIS = True
except ImportError:
    redis = None
    HAS_REDIS = False


def argument_spec() -> dict:
    spec = pg_argument_spec()
    spec.update(redis_argument_spec())
    spec.update(
        backend=dict(type="str", required=True, choices=list(F.BACKENDS)),
        flags=dict(type="dict"),
        restore=dict(type="dict"),
        path=dict(type="path"),
        mode=dict(type="raw", default="0640"),
        table=dict(type="str", default="feature_flags"),
        create_table=dict(type="bool", default=False),
        key=dict(type="str", default="feature_flags", no_log=False),
        audit=dict(type="dict", options=dict(
            file=dict(type="path"), table=dict(type="str"),
            actor=dict(type="str"), run_id=dict(type="str")),
            required_one_of=[["file", "table"]]),
    )
    return spec


def desired_state(module) -> dict:
    """name → value (None = delete), validated before anything is touched."""
    backend = module.params["backend"]
    try:
        if module.params["restore"] is not None:
            snap = F.validate_snapshot(module.params["restore"], backend)
            desired = dict(snap["present"])
            desired.update({name: None for name in snap["absent"]})
            return desired
        F.validate_flags(module.params["flags"], backend)
        return dict(module.params["flags"])
    except F.FlagError as exc:
        module.fail_json(msg=str(exc), changed=False)
    return {}


def new_file_mode(module) -> int:
    mode = module.params["mode"]
    try:
        value = int(mode, 8) if isinstance(mode, str) else int(mode)
        if not 0 <= value <= 0o7777:
            raise ValueError
        return value
    except (TypeError, ValueError):
        module.fail_json(msg="mode=%r is not a file mode: give an octal string such as '0640'" % (mode,))
    return 0


class Audit:
    """The audit destinations: checked before the change, written after (or with) it."""

    def __init__(self, module, backend_conn=None):
        self.module = module
        opts = module.params["audit"] or {}
        self.file = opts.get("file")
        self.table = opts.get("table")
        self.actor = opts.get("actor") or F.default_actor()
        self.run_id = opts.get("run_id") or F.default_run_id()
        self.conn = None
        self.shared = False
        self.backend_conn = backend_conn
        self.counts = {}

    def prepare(self) -> None:
        try:
            if self.file:
                F.audit_file_check(self.file)
            if self.table:
                F.split_ident(self.table)
        except F.FlagError as exc:
            self.module.fail_json(msg=str(exc), changed=False)
        if self.table and not self.module.check_mode:
            self.shared = self.backend_conn is not None
            self.conn = self.backend_conn or pg_connect(self.module)
            with self.conn.cursor() as cur:
                F.pg_create_audit_table(cur, pgsql, self.table)

    def write_table(self, records: list) -> None:
        """Insert rows inside the open transaction (committed with the change or by commit())."""
        if self.table:
            with self.conn.cursor() as cur:
                F.pg_write_audit(cur, pgsql, self.table, records)
            self.counts["table"] = len(records)

    def commit(self) -> None:
        if self.conn is not None and not self.shared:
            self.conn.commit()

    def write_file(self, records: list) -> None:
        if self.file:
            F.audit_file_write(self.file, records)
            self.counts["file"] = len(records)


def run_env_file(module, desired: dict) -> dict:
    path = module.params["path"]
    mode = new_file_mode(module)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        module.fail_json(msg="path %s: folder %s does not exist; create it first (the app's "
                         "config folder) or fix path" % (path, folder), changed=False)
    if os.path.isdir(path):
        module.fail_json(msg="path %s is a directory; give the env file itself" % path, changed=False)
    if not os.access(folder, os.W_OK):
        module.fail_json(msg="path %s: folder %s is not writable by uid %d (the atomic write puts a "
                         "temporary file beside it); run with become or fix the folder's permissions"
                         % (path, folder, os.getuid()), changed=False)
    try:
        before_text, values = F.read_env_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg="cannot read env file %s: %s" % (path, to_native(exc)), changed=False)
    result = F.plan(values, desired, "env_file")
    after_text = F.edit_env_text(before_text, {n: None if v is None else F.as_text(v)
                                               for n, v in desired.items()})
    result["diff"] = {"before": before_text, "after": after_text,
                      "before_header": path, "after_header": path}
    result["target"] = path
    audit = Audit(module)
    audit.prepare()
    if result["changes"] and not module.check_mode:
        records = F.audit_records(result["changes"], "env_file", path, audit.actor, audit.run_id)
        audit.write_table(records)
        try:
            F.write_atomic(path, after_text, mode)
        except OSError as exc:
            module.fail_json(msg="cannot write env file %s: %s; nothing was changed"
                             % (path, to_native(exc)), changed=False)
        audit.commit()
        audit.write_file(records)
    result["audited"] = audit.counts
    return result


def run_postgres(module, desired: dict) -> dict:
    table = module.params["table"]
    try:
        F.split_ident(table)
    except F.FlagError as exc:
        module.fail_json(msg=str(exc), changed=False)
    conn = pg_connect(module)
    audit = Audit(module, backend_conn=conn)
    try:
        with conn.cursor() as cur:
            exists = F.pg_table_exists(cur, table)
            if not exists and not module.params["create_table"]:
                module.fail_json(msg="flag table %s does not exist in database %s; set "
                                 "create_table: true to create it, or fix table / db"
                                 % (table, module.params["db"]), changed=False)
            audit.prepare()
            if exists:
                current = F.pg_read_flags(cur, pgsql, table, list(desired), lock=not module.check_mode)
            else:
                current = {}
                if not module.check_mode:
                    F.pg_create_flag_table(cur, pgsql, table)
            result = F.plan(current, desired, "postgres")
            if result["changes"] and not module.check_mode:
                F.pg_apply_flags(cur, pgsql, table, result["changes"], audit.actor)
                audit.write_table(F.audit_records(result["changes"], "postgres", table,
                                                  audit.actor, audit.run_id))
        if module.check_mode:
            conn.rollback()
        else:
            conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        module.fail_json(msg="PostgreSQL refused the flag change on table %s: %s"
                         % (table, to_native(exc).strip()), changed=False)
    finally:
        conn.close()
    if result["changes"] and not module.check_mode:
        audit.write_file(F.audit_records(result["changes"], "postgres", table, audit.actor, audit.run_id))
    result["diff"] = {"before": F.diff_text(result["previous"]["present"]),
                      "after": F.diff_text(result["current"]), "before_header": table,
                      "after_header": table}
    result["target"] = table
    result["audited"] = audit.counts
    if created_table(module, exists):
        result["created_table"] = True
    return result


def created_table(module, exists: bool) -> bool:
    return not exists and module.params["create_table"]


def run_redis(module, desired: dict) -> dict:
    key = module.params["key"]
    if not key:
        module.fail_json(msg="key is empty: give the name of the Redis hash that holds the flags")
    client = redis_connect(module)
    audit = Audit(module)
    audit.prepare()
    try:
        if client.type(key) not in ("hash", "none"):
            module.fail_json(msg="Redis key %s holds a %s, not a hash; choose another key"
                             % (key, client.type(key)), changed=False)
        result = F.redis_change_flags(client, key, desired, not module.check_mode,
                                      redis.exceptions.WatchError)
        if result["changes"] and not module.check_mode:
            records = F.audit_records(result["changes"], "redis", key, audit.actor, audit.run_id)
            audit.write_table(records)
            audit.commit()
            audit.write_file(records)
    except F.FlagError as exc:
        module.fail_json(msg=str(exc), changed=False)
    except redis.exceptions.RedisError as exc:
        module.fail_json(msg="Redis refused the flag change on hash %s: %s; check the user's ACL "
                         "(needs hash read/write on the key)" % (key, to_native(exc)), changed=False)
    result["diff"] = {"before": F.diff_text(result["previous"]["present"]),
                      "after": F.diff_text(result["current"]), "before_header": key,
                      "after_header": key}
    result["target"] = key
    result["audited"] = audit.counts
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[["flags", "restore"]],
        required_one_of=[["flags", "restore"]],
        required_if=[["backend", "env_file", ["path"]]],
    )
    backend = module.params["backend"]
    desired = desired_state(module)
    needs_pg = backend == "postgres" or (module.params["audit"] or {}).get("table")
    if needs_pg and not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_ERROR)
    runner = {"env_file": run_env_file, "postgres": run_postgres, "redis": run_redis}[backend]
    result = runner(module, desired)
    changed = bool(result["changes"])
    # Only a change actually made goes unrecorded: a check-mode run (the rollout's read-only
    # snapshot) or a run that changes nothing has nothing to audit.
    if changed and not module.check_mode and not module.params["audit"]:
        module.warn("feature_flag changed %d flag(s) without an audit destination; set audit.file "
                    "or audit.table to keep who/when/run id/old/new" % len(result["changes"]))
    out = dict(changed=changed, previous=result["previous"], current=result["current"],
               changes=result["changes"], target=result["target"], audited=result["audited"])
    if module._diff:
        out["diff"] = result["diff"]
    module.exit_json(**out)


if __name__ == "__main__":
    main()
