#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollout state kept in PostgreSQL so the next run (a laptop, an AWX schedule) resumes."""
from __future__ import annotations

DOCUMENTATION = r"""
module: rollout_state
short_description: Record and read the state of a staged rollout in PostgreSQL
version_added: "0.1.0"
description:
  - Keeps one row per attempt of a rollout stage in C(<schema>.rollout_state) (schema C(gradual) by
    default) - stage, status, start, progress and finish times, batches done, gate figures, the
    reason of a failure or rollback, the actor and the AWX job id - so that the next run resumes.
  - O(operation=read) returns every row of a plan and the latest row per stage. It reads even in
    check mode and returns nothing (no failure) when the schema does not exist yet.
  - O(operation=start) resumes the stage's row left C(running) by an interrupted run, or inserts a
    new one. With O(supersede), the latest row of each named stage, when C(passed), becomes
    C(superseded) in the same transaction (an earlier stage runs again and overwrites what they
    set).
  - O(operation=progress) records a finished batch. O(operation=finish) closes the row as
    C(passed), C(failed) or C(rolled_back).
  - O(operation=watch) records a watch of the passed run O(run_id) in C(<schema>.rollout_watch) -
    time, O(verdict), O(reason), the gates' figures (O(figures)), actor and AWX job id.
    O(operation=read) returns the plan's watches as RV(watches); the next stage's choice reads them.
  - O(operation=reset) deletes every row of the plan (a lab or a demo starting over) and its
    watches; the rows are returned as RV(rows) for the record.
  - Every write returns C(rollout_event), which the C(gradual.rollout.rollout_notify) callback posts
    to a webhook and appends to an audit file.
extends_documentation_fragment:
  - community.postgresql.postgres
  - gradual.rollout.postgres
options:
  operation:
    description: What to do.
    type: str
    choices: [read, start, progress, finish, watch, ensure_schema, reset]
    default: read
  plan:
    description: Name of the rollout plan; rows of different plans never mix.
    type: str
    required: true
  stage:
    description: Stage name. Required for O(operation=start).
    type: str
  supersede:
    description:
      - With O(operation=start), stages whose latest row, when C(passed), is marked C(superseded)
        before anything changes, with a reason naming O(stage) (the stage run again). A later
        O(operation=read) and the next stage choice treat them as not passed, so they run again.
      - Stages not passed (or without a row) are left as they are.
    type: list
    elements: str
    default: []
  run_id:
    description:
      - Row id returned by O(operation=start). Required for O(operation=progress), O(operation=finish)
        and O(operation=watch) (the passed run watched).
    type: int
  verdict:
    description: What the watch concluded (O(operation=watch)).
    type: str
    choices: [passed, failed, inconclusive]
  status:
    description: Final status for O(operation=finish).
    type: str
    choices: [passed, failed, rolled_back]
  reason:
    description: Why the stage ended as it did (the failed task and its message for a rollback).
    type: str
  figures:
    description:
      - Gate results (gate name -> figures), merged into the row's figures; with O(operation=watch),
        the watch's gates, kept with the watch.
    type: dict
  hosts:
    description: Hosts finished by this batch (O(operation=progress)); added to the row's list.
    type: list
    elements: str
  batch:
    description: Number of the batch just finished (O(operation=progress)).
    type: int
  actor:
    description: Who runs the rollout (user name, AWX user).
    type: str
  awx_job_id:
    description: The AWX / automation controller job id when run from AWX.
    type: str
  schema:
    description: Schema holding the state table; created when missing.
    type: str
    default: gradual
attributes:
  check_mode:
    support: full
    details: Reads are real; writes are reported as they would happen and not made.
notes:
  - The table is C(<schema>.rollout_state); a status check constraint keeps values honest
    (C(running), C(passed), C(failed), C(rolled_back), C(superseded)). A table made by an older
    version is given the C(superseded) status by the first write.
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: Read the state of the plan
  gradual.rollout.rollout_state:
    db: app
    plan: checkout-v2
  register: state

- name: Record the start of a stage
  gradual.rollout.rollout_state:
    db: app
    plan: checkout-v2
    operation: start
    stage: canary_one_host
    actor: "{{ awx_user_name | default('ops') }}"
    awx_job_id: "{{ awx_job_id | default(omit) }}"
  register: run

- name: Record a rollback with its reason
  gradual.rollout.rollout_state:
    db: app
    plan: checkout-v2
    operation: finish
    run_id: "{{ run.run.id }}"
    status: rolled_back
    reason: "gate pool failed: utilization 93% > 50%"
"""

RETURN = r"""
rows:
  description: Every row of the plan, oldest first (O(operation=read)).
  returned: always
  type: list
  elements: dict
latest:
  description: Latest row per stage name.
  returned: always
  type: dict
run:
  description: The row written or that would be written.
  returned: when operation is start, progress or finish
  type: dict
resumed:
  description: True when O(operation=start) picked up a row left C(running) by an interrupted run.
  returned: when operation is start
  type: bool
superseded:
  description: Rows marked C(superseded) by O(supersede) (as they would be, in check mode).
  returned: when operation is start
  type: list
  elements: dict
watches:
  description: The plan's watch records, oldest first (id, state_id, stage, at, verdict, reason, gates, actor).
  returned: always
  type: list
  elements: dict
watch:
  description: The watch record written (or that would be written, in check mode).
  returned: when operation is watch
  type: dict
rollout_event:
  description: Summary for notifications (plan, stage, event, status, reason, figures, actor).
  returned: when operation is start, progress, finish or watch
  type: dict
removed:
  description: Rows deleted by O(operation=reset).
  returned: when operation is reset
  type: list
  elements: dict
executed_queries:
  description: Statements sent to the server (parameters not expanded).
  returned: always
  type: list
  elements: str
"""

import json
from datetime import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.gradual.rollout.plugins.module_utils.pg import pg_argument_spec, pg_connect
from ansible_collections.gradual.rollout.plugins.module_utils.rollout_plan import (
    STATUSES,
    WATCH_VERDICTS,
    latest_by_stage,
)

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # reported by pg_connect
    psycopg2 = None
    sql = None

COLUMNS = ("id", "plan", "stage", "status", "started_at", "updated_at", "finished_at", "batches_done",
           "hosts_done", "figures", "reason", "actor", "awx_job_id")
WATCH_COLUMNS = ("id", "state_id", "plan", "stage", "at", "verdict", "reason", "gates", "actor", "awx_job_id")


def ddl(schema: str) -> list:
    ident = sql.Identifier(schema)
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident),
        sql.SQL("""CREATE TABLE IF NOT EXISTS {}.rollout_state (
            id bigserial PRIMARY KEY,
            plan text NOT NULL,
            stage text NOT NULL,
            status text NOT NULL CONSTRAINT rollout_state_status_check CHECK (status IN ({statuses})),
            started_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            batches_done integer NOT NULL DEFAULT 0,
            hosts_done jsonb NOT NULL DEFAULT '[]'::jsonb,
            figures jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            reason text,
            actor text,
            awx_job_id text)""").format(ident, statuses=_statuses()),
        sql.SQL("CREATE INDEX IF NOT EXISTS rollout_state_plan_stage_idx ON {}.rollout_state (plan, stage, id)")
        .format(ident),
    ] + watch_ddl(schema)


def watch_ddl(schema: str) -> list:
    """The watches of passed runs; deleted with their run (a reset)."""
    ident = sql.Identifier(schema)
    return [
        sql.SQL("""CREATE TABLE IF NOT EXISTS {0}.rollout_watch (
            id bigserial PRIMARY KEY,
            state_id bigint NOT NULL REFERENCES {0}.rollout_state (id) ON DELETE CASCADE,
            plan text NOT NULL,
            stage text NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            verdict text NOT NULL CONSTRAINT rollout_watch_verdict_check CHECK (verdict IN ({1})),
            reason text,
            gates jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            actor text,
            awx_job_id text)""").format(ident, sql.SQL(", ").join(sql.Literal(v) for v in WATCH_VERDICTS)),
        sql.SQL("CREATE INDEX IF NOT EXISTS rollout_watch_plan_idx ON {}.rollout_watch (plan, state_id, id)")
        .format(ident),
    ]


def _statuses():
    return sql.SQL(", ").join(sql.Literal(status) for status in STATUSES)


def _row(record, columns=COLUMNS) -> dict:
    row = dict(zip(columns, record))
    for key in ("started_at", "updated_at", "finished_at", "at"):
        if key not in row:
            continue
        if isinstance(row[key], datetime):
            row[key] = row[key].isoformat()
    return row


class State:
    def __init__(self, module, conn):
        self.module = module
        self.conn = conn
        self.schema = module.params["schema"]
        self.queries = []
        self.table = sql.SQL("{}.rollout_state").format(sql.Identifier(self.schema))

    def execute(self, cur, query, args=None):
        self.queries.append(query.as_string(self.conn))
        cur.execute(query, args)

    def exists(self, table: str = "rollout_state") -> bool:
        with self.conn.cursor() as cur:
            self.execute(cur, sql.SQL("SELECT to_regclass(%s) IS NOT NULL"),
                         ("%s.%s" % (sql.Identifier(self.schema).as_string(self.conn), table),))
            return bool(cur.fetchone()[0])

    def ensure(self) -> bool:
        if self.exists():
            return self.upgrade()
        if not self.module.check_mode:
            with self.conn.cursor() as cur:
                for query in ddl(self.schema):
                    self.execute(cur, query)
        return True

    def upgrade(self) -> bool:
        """Give a table made by an older version every status of STATUSES (its CHECK lacked
        'superseded') and the watch table; True when it had to (or would, in check mode)."""
        watches = not self.exists("rollout_watch")
        if watches and not self.module.check_mode:
            with self.conn.cursor() as cur:
                for query in watch_ddl(self.schema):
                    self.execute(cur, query)
        with self.conn.cursor() as cur:
            self.execute(cur, sql.SQL("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                      "WHERE conrelid = %s::regclass AND contype = 'c'"),
                         ("%s.rollout_state" % sql.Identifier(self.schema).as_string(self.conn),))
            checks = [name for name, definition in cur.fetchall()
                      if "status" in definition and "'superseded'" not in definition]
            if checks and not self.module.check_mode:
                self.execute(cur, sql.SQL("ALTER TABLE {} {}, ADD CONSTRAINT rollout_state_status_check "
                                          "CHECK (status IN ({}))").format(
                    self.table, sql.SQL(", ").join(sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(c))
                                                   for c in checks), _statuses()))
        return bool(checks) or watches

    def supersede(self, rows: list, stages: list, by: str, actor) -> list:
        """Mark the latest row (among ROWS) of each of STAGES superseded when it is passed; the
        rows as marked."""
        latest = latest_by_stage(rows)
        marked = []
        for row in [latest[s] for s in stages if (latest.get(s) or {}).get("status") == "passed"]:
            who = " by %s" % actor if actor else ""
            reason = ("superseded: stage %s was run again%s and set again what this stage had set "
                      "(passed at %s); it runs again after it" % (by, who, row.get("finished_at") or "-"))
            if self.module.check_mode:
                marked.append(dict(row, status="superseded", reason=reason))
            else:
                marked.append(self.write("UPDATE {table} SET status = 'superseded', updated_at = now(), "
                                         "reason = %s WHERE id = %s AND status = 'passed' RETURNING {cols}",
                                         (reason, row["id"])))
        return marked

    def select(self, where: str, args: tuple) -> list:
        with self.conn.cursor() as cur:
            self.execute(cur, sql.SQL("SELECT {} FROM {} WHERE " + where + " ORDER BY id").format(
                sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), self.table), args)
            return [_row(r) for r in cur.fetchall()]

    def read(self, plan: str) -> list:
        if not self.exists():
            return []
        return self.select("plan = %s", (plan,))

    def watches(self, plan: str) -> list:
        if not self.exists("rollout_watch"):
            return []
        with self.conn.cursor() as cur:
            self.execute(cur, sql.SQL("SELECT {} FROM {}.rollout_watch WHERE plan = %s ORDER BY id").format(
                sql.SQL(", ").join(map(sql.Identifier, WATCH_COLUMNS)), sql.Identifier(self.schema)), (plan,))
            return [_row(r, WATCH_COLUMNS) for r in cur.fetchall()]

    def get(self, plan: str, run_id: int) -> dict:
        rows = self.select("plan = %s AND id = %s", (plan, run_id)) if self.exists() else []
        if not rows:
            self.module.fail_json(msg="run_id %s of plan %r is not in %s.rollout_state; pass the id "
                                  "returned by operation=start" % (run_id, plan, self.schema))
        return rows[0]

    def write(self, query, args) -> dict:
        with self.conn.cursor() as cur:
            self.execute(cur, sql.SQL(query).format(
                table=self.table, cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS))), args)
            return _row(cur.fetchone())

    # --- operations: each returns the run it wrote (or would write) and the event to report ------

    def op_read(self, p, now):
        return {}, None

    def op_ensure_schema(self, p, now):
        return {}, None

    def op_reset(self, p, now):
        removed = self.read(p["plan"])
        if removed and not self.module.check_mode:
            with self.conn.cursor() as cur:
                self.execute(cur, sql.SQL("DELETE FROM {} WHERE plan = %s").format(self.table), (p["plan"],))
        return dict(changed=bool(removed), removed=removed), None

    def op_start(self, p, now):
        before = self.read(p["plan"])
        running = [r for r in before if r["stage"] == p["stage"] and r["status"] == "running"]
        superseded = self.supersede(before, p["supersede"], p["stage"], p["actor"])
        if self.module.check_mode:
            run = running[-1] if running else dict(id=None, plan=p["plan"], stage=p["stage"], status="running",
                                                   started_at=now, batches_done=0, hosts_done=[], figures={})
        elif running:
            run = self.write("UPDATE {table} SET updated_at = now(), actor = coalesce(%s, actor), "
                             "awx_job_id = coalesce(%s, awx_job_id) WHERE id = %s RETURNING {cols}",
                             (p["actor"], p["awx_job_id"], running[-1]["id"]))
        else:
            run = self.write("INSERT INTO {table} (plan, stage, status, actor, awx_job_id) "
                             "VALUES (%s, %s, 'running', %s, %s) RETURNING {cols}",
                             (p["plan"], p["stage"], p["actor"], p["awx_job_id"]))
        event = dict(event="resume" if running else "start", superseded=[r["stage"] for r in superseded])
        return dict(changed=True, run=run, resumed=bool(running), superseded=superseded), event

    def _update(self, p, query, args):
        """Run QUERY, an UPDATE of run_id's row, with ARGS(the row as it is). In check mode: the row
        as it is, or a stand-in on a database that has no state yet."""
        if self.module.check_mode:
            found = self.select("plan = %s AND id = %s", (p["plan"], p["run_id"])) if self.exists() else []
            return dict(found[0]) if found else dict(id=p["run_id"], plan=p["plan"], stage=p["stage"])
        return self.write(query, args(self.get(p["plan"], p["run_id"])))

    def op_watch(self, p, now):
        # fails naming a run_id not in the state (in check mode a fresh database has none)
        run = self.get(p["plan"], p["run_id"]) if self.exists() or not self.module.check_mode else {}
        if run and run["status"] != "passed":
            self.module.fail_json(msg="run_id %s of plan %r is %s, not passed: only a passed stage is watched"
                                  % (p["run_id"], p["plan"], run["status"]))
        watch = dict(id=None, state_id=p["run_id"], plan=p["plan"], stage=run.get("stage") or p["stage"], at=now,
                     verdict=p["verdict"], reason=p["reason"], gates=p["figures"] or {}, actor=p["actor"],
                     awx_job_id=p["awx_job_id"])
        if not self.module.check_mode:
            with self.conn.cursor() as cur:
                self.execute(cur, sql.SQL("INSERT INTO {}.rollout_watch (state_id, plan, stage, verdict, reason, "
                                          "gates, actor, awx_job_id) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s) "
                                          "RETURNING {}").format(
                    sql.Identifier(self.schema), sql.SQL(", ").join(map(sql.Identifier, WATCH_COLUMNS))),
                    (watch["state_id"], watch["plan"], watch["stage"], watch["verdict"], watch["reason"],
                     json.dumps(watch["gates"]), watch["actor"], watch["awx_job_id"]))
                watch = _row(cur.fetchone(), WATCH_COLUMNS)
        return dict(changed=True, run=run or dict(id=p["run_id"], plan=p["plan"], stage=p["stage"]),
                    watch=watch), dict(event="watch", verdict=p["verdict"])

    def op_progress(self, p, now):
        run = self._update(
            p, "UPDATE {table} SET updated_at = now(), batches_done = greatest(batches_done, %s), "
               "hosts_done = (SELECT coalesce(jsonb_agg(DISTINCT h), '[]'::jsonb) FROM jsonb_array_elements("
               "hosts_done || %s::jsonb) AS h), figures = figures || %s::jsonb "
               "WHERE id = %s RETURNING {cols}",
            lambda current: (p["batch"] if p["batch"] is not None else current["batches_done"],
                             json.dumps(p["hosts"] or []), json.dumps(p["figures"] or {}), p["run_id"]))
        return dict(changed=True, run=run), dict(event="batch")

    def op_finish(self, p, now):
        run = self._update(
            p, "UPDATE {table} SET updated_at = now(), finished_at = now(), status = %s, "
               "reason = coalesce(%s, reason), figures = figures || %s::jsonb "
               "WHERE id = %s RETURNING {cols}",
            lambda current: (p["status"], p["reason"], json.dumps(p["figures"] or {}), p["run_id"]))
        return dict(changed=True, run=run), dict(event=p["status"])


OPERATIONS = ("read", "start", "progress", "finish", "watch", "ensure_schema", "reset")
# Operations that write, so they make (or upgrade) the table first.
WRITING = ("ensure_schema", "start", "progress", "finish", "watch")


def main():
    argument_spec = pg_argument_spec()
    argument_spec.update(
        operation=dict(type="str", default="read", choices=list(OPERATIONS)),
        plan=dict(type="str", required=True),
        stage=dict(type="str"),
        supersede=dict(type="list", elements="str", default=[]),
        run_id=dict(type="int"),
        status=dict(type="str", choices=["passed", "failed", "rolled_back"]),
        verdict=dict(type="str", choices=list(WATCH_VERDICTS)),
        reason=dict(type="str"),
        figures=dict(type="dict"),
        hosts=dict(type="list", elements="str"),
        batch=dict(type="int"),
        actor=dict(type="str"),
        awx_job_id=dict(type="str"),
        schema=dict(type="str", default="gradual"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[
            ("operation", "start", ["stage"]),
            ("operation", "progress", ["run_id"]),
            ("operation", "finish", ["run_id", "status"]),
            ("operation", "watch", ["run_id", "verdict"]),
        ],
    )
    p = module.params
    conn = pg_connect(module, autocommit=False)
    state = State(module, conn)
    result = dict(changed=False, rows=[], latest={}, watches=[], executed_queries=state.queries)
    op = p["operation"]
    try:
        if op in WRITING:
            result["changed"] = state.ensure()
        now = datetime.now().astimezone().isoformat()
        outcome, event = getattr(state, "op_" + op)(p, now)
        result["changed"] = result["changed"] or outcome.pop("changed", False)
        result.update(outcome)
        if event is not None:
            run = result["run"]
            event.update(plan=p["plan"], stage=run.get("stage") or p["stage"], status=run.get("status"),
                         run_id=run.get("id"), reason=p["reason"], batch=p["batch"], hosts=p["hosts"],
                         figures=p["figures"] or {}, actor=p["actor"] or run.get("actor"),
                         awx_job_id=p["awx_job_id"] or run.get("awx_job_id"),
                         check_mode=module.check_mode, at=now)
            result["rollout_event"] = event
        if module.check_mode:
            conn.rollback()
        else:
            conn.commit()
        rows = state.read(p["plan"])
        result["rows"] = rows
        result["latest"] = {r["stage"]: r for r in rows}
        result["watches"] = state.watches(p["plan"])
    except psycopg2.Error as exc:
        conn.rollback()
        module.fail_json(msg="rollout_state %s on plan %r failed: %s" % (op, p["plan"], to_native(exc).strip()),
                         executed_queries=state.queries)
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
