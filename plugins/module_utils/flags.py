# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Feature flag backends (env file, PostgreSQL table, Redis hash), snapshots and audit.

A *snapshot* is what feature_flag returns as ``previous`` and accepts as ``restore``::

    {"backend": "env_file", "present": {"USE_CACHE": "false"}, "absent": ["NEW_FLAG"]}

Restoring it sets every ``present`` flag to exactly that value and deletes every ``absent`` one.

Values: str, int or bool. The env file and Redis store text (``true`` / ``false`` for booleans,
as the app reads them from its environment); PostgreSQL stores the JSON value in a jsonb column.
"""
from __future__ import annotations

import datetime
import getpass
import json
import os
import re
import tempfile

BACKENDS = ("env_file", "postgres", "redis")
# Every pattern here is used with fullmatch(): "$" alone also matches before a final newline, and
# a name such as "FOO\n" would split into two broken lines of the env file.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
_ENV_LINE_RE = re.compile(r"^(?P<lead>\s*)(?P<export>export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                          r"(?P<eq>\s*=\s*)(?P<value>.*?)(?P<trail>\s*)$")
_SAFE_UNQUOTED_RE = re.compile(r"^[A-Za-z0-9_./:@+,%=-]*$")
RUN_ID_ENV = ("AWX_JOB_ID", "TOWER_JOB_ID", "JOB_ID")


class FlagError(ValueError):
    """Bad input; the message names the value and what is expected."""


# --- validation and value forms ---------------------------------------------------------------

def validate_name(name, backend: str) -> None:
    if backend == "env_file":
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            raise FlagError("flag name %r is not a valid environment variable name: use letters, "
                            "digits and _, not starting with a digit (e.g. USE_REDIS_CACHE)" % (name,))
    elif not isinstance(name, str) or not KEY_NAME_RE.fullmatch(name):
        raise FlagError("flag name %r is not valid: use 1-128 characters from letters, digits and "
                        "_ . : - (e.g. use_redis_cache)" % (name,))


def validate_value(name: str, value, backend: str) -> None:
    if isinstance(value, bool) or isinstance(value, int):
        return
    if isinstance(value, str):
        bad = control_character(value)
        if backend != "postgres" and bad is not None:
            raise FlagError("flag %s: value %r contains the control character U+%04X (a newline, "
                            "carriage return, NUL or another line or control character), which an "
                            "env file line or an environment variable cannot hold; use a single line "
                            "of printable text (tab is allowed)" % (name, value, ord(bad)))
        if "\x00" in value:
            raise FlagError("flag %s: value %r contains NUL (U+0000), which PostgreSQL text and "
                            "jsonb cannot hold" % (name, value))
        return
    raise FlagError("flag %s: value %r has type %s; use a string, an integer or a boolean"
                    % (name, value, type(value).__name__))


def control_character(text: str):
    """The first character of TEXT that cannot sit in one env-file line (C0/C1 controls but tab,
    DEL, and the Unicode line separators that str.splitlines() breaks on), or None."""
    for char in text:
        code = ord(char)
        if (code < 0x20 and char != "\t") or 0x7f <= code <= 0x9f or char in "\u2028\u2029":
            return char
    return None


def validate_flags(flags: dict, backend: str) -> None:
    if not flags:
        raise FlagError("flags is empty: give at least one name: value pair (or use restore)")
    for name, value in flags.items():
        validate_name(name, backend)
        validate_value(name, value, backend)


def as_text(value) -> str:
    """The text form the env file and Redis store: true/false, 42, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stored_form(value, backend: str):
    """The value as the backend holds it (text for env_file/redis, JSON value for postgres)."""
    return value if backend == "postgres" else as_text(value)


def same(a, b) -> bool:
    """Type-aware equality (True is not 1, "1" is not 1)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def validate_snapshot(snapshot, backend: str) -> dict:
    """Check a ``restore`` value; return {"present": {...}, "absent": [...]}."""
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("present", {}), dict) \
            or not isinstance(snapshot.get("absent", []), list):
        raise FlagError("restore must be the 'previous' value returned by feature_flag: a dict "
                        "with 'present' (name: value) and 'absent' (list of names); got %r" % (snapshot,))
    taken = snapshot.get("backend")
    if taken and taken != backend:
        raise FlagError("restore snapshot was taken from backend %r but backend is %r; restore "
                        "it with backend: %s" % (taken, backend, taken))
    present = dict(snapshot.get("present") or {})
    absent = list(snapshot.get("absent") or [])
    both = sorted(set(present) & set(absent))
    if both:
        raise FlagError("restore snapshot lists %s as both present and absent" % ", ".join(both))
    if not present and not absent:
        raise FlagError("restore snapshot is empty: it names no flag to put back")
    for name in absent:
        validate_name(name, backend)
    for name, value in present.items():
        validate_name(name, backend)
        validate_value(name, value, backend)
    return {"present": present, "absent": absent}


def plan(current: dict, desired: dict, backend: str) -> dict:
    """Compare CURRENT (present flags among those asked) with DESIRED (name → value, or None to
    delete). Returns previous snapshot, current-after, and the list of changes."""
    changes = []
    after = {}
    for name in sorted(desired):
        want = desired[name]
        has = name in current
        if want is None:
            if has:
                changes.append({"flag": name, "action": "delete", "old": current[name], "new": None})
            continue
        want = stored_form(want, backend)
        after[name] = want
        if not has:
            changes.append({"flag": name, "action": "create", "old": None, "new": want})
        elif not same(current[name], want):
            changes.append({"flag": name, "action": "update", "old": current[name], "new": want})
    previous = {"backend": backend,
                "present": {n: current[n] for n in sorted(desired) if n in current},
                "absent": [n for n in sorted(desired) if n not in current]}
    return {"previous": previous, "current": after, "changes": changes}


def diff_text(values: dict) -> str:
    return "".join("%s=%s\n" % (k, json.dumps(values[k])) for k in sorted(values))


# --- env file ---------------------------------------------------------------------------------

def parse_env_value(raw: str) -> str:
    """The value systemd / dotenv read from the right-hand side of NAME=..."""
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        out, i, inner = [], 0, raw[1:-1]
        while i < len(inner):
            if inner[i] == "\\" and i + 1 < len(inner) and inner[i + 1] in '"\\$`':
                out.append(inner[i + 1])
                i += 2
            else:
                out.append(inner[i])
                i += 1
        return "".join(out)
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    return raw


def render_env_value(value: str, like: str = "") -> str:
    """VALUE as the right-hand side of NAME=..., quoted the way LIKE (the old one) was when it
    can be, so an edit keeps the file's style and a restore gives back the same bytes."""
    if like[:1] == "'" and "'" not in value:
        return "'%s'" % value
    if _SAFE_UNQUOTED_RE.fullmatch(value) and like[:1] != '"':
        return value
    escaped = "".join("\\" + c if c in '"\\$`' else c for c in value)
    return '"%s"' % escaped


def read_env_file(path: str) -> tuple:
    """(text, {name: value}) of PATH; ("", {}) when it does not exist. Last assignment wins."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return "", {}
    values = {}
    for line in text.splitlines():
        match = _ENV_LINE_RE.fullmatch(line)
        if match and not line.lstrip().startswith("#"):
            values[match.group("name")] = parse_env_value(match.group("value"))
    return text, values


def edit_env_text(text: str, desired: dict) -> str:
    """TEXT with DESIRED applied (name → text value, or None to delete): assignments edited in
    place (the last one of a name; earlier duplicates are left, the last one wins), comments,
    blank lines and order kept, new names appended."""
    lines = text.splitlines(keepends=True)
    last = {}
    for idx, line in enumerate(lines):
        match = _ENV_LINE_RE.fullmatch(line.rstrip("\r\n"))
        if match and not line.lstrip().startswith("#"):
            last[match.group("name")] = idx
    drop = set()
    for name, value in desired.items():
        if name not in last:
            continue
        if value is None:
            drop.update(i for i, line in enumerate(lines) if _assigns(line, name))
            continue
        idx = last[name]
        match = _ENV_LINE_RE.fullmatch(lines[idx].rstrip("\r\n"))
        if parse_env_value(match.group("value")) == value:
            continue
        ending = lines[idx][len(lines[idx].rstrip("\r\n")):] or "\n"
        lines[idx] = "%s%s%s%s%s%s" % (match.group("lead"), match.group("export") or "", name,
                                       match.group("eq"), render_env_value(value, match.group("value")),
                                       ending)
    lines = [line for i, line in enumerate(lines) if i not in drop]
    new = [n for n in sorted(desired) if n not in last and desired[n] is not None]
    if new and lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines.extend("%s=%s\n" % (n, render_env_value(desired[n])) for n in new)
    return "".join(lines)


def _assigns(line: str, name: str) -> bool:
    match = _ENV_LINE_RE.fullmatch(line.rstrip("\r\n"))
    return bool(match) and not line.lstrip().startswith("#") and match.group("name") == name


def write_atomic(path: str, text: str, new_mode: int) -> None:
    """Replace PATH with TEXT atomically (temp file in the same folder, fsync, rename), keeping the
    mode and owner of the existing file; a new file gets NEW_MODE."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), (st.st_mode & 0o7777) if st else new_mode)
            if st is not None and os.geteuid() == 0:
                os.fchown(fh.fileno(), st.st_uid, st.st_gid)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- PostgreSQL -------------------------------------------------------------------------------

def split_ident(name: str) -> tuple:
    if not IDENT_RE.fullmatch(name or ""):
        raise FlagError("table name %r is not a plain SQL identifier: use name or schema.name "
                        "with letters, digits and _" % (name,))
    return tuple(name.split("."))


def pg_table_exists(cur, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
    return bool(cur.fetchone()[0])


def pg_create_flag_table(cur, sql, table: str) -> None:
    cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, value jsonb NOT NULL, "
                        "updated_at timestamptz NOT NULL DEFAULT now(), updated_by text)")
                .format(sql.Identifier(*split_ident(table))))


def pg_read_flags(cur, sql, table: str, names: list, lock: bool) -> dict:
    query = sql.SQL("SELECT name, value FROM {} WHERE name = ANY(%s)" + (" FOR UPDATE" if lock else "")) \
        .format(sql.Identifier(*split_ident(table)))
    cur.execute(query, (list(names),))
    return dict(cur.fetchall())


def pg_apply_flags(cur, sql, table: str, changes: list, actor: str) -> None:
    ident = sql.Identifier(*split_ident(table))
    for change in changes:
        if change["action"] == "delete":
            cur.execute(sql.SQL("DELETE FROM {} WHERE name = %s").format(ident), (change["flag"],))
        else:
            cur.execute(sql.SQL("INSERT INTO {} (name, value, updated_at, updated_by) "
                                "VALUES (%s, %s::jsonb, now(), %s) ON CONFLICT (name) DO UPDATE "
                                "SET value = EXCLUDED.value, updated_at = now(), "
                                "updated_by = EXCLUDED.updated_by").format(ident),
                        (change["flag"], json.dumps(change["new"]), actor))


# --- Redis ------------------------------------------------------------------------------------

def redis_read_flags(client, key: str, names: list) -> dict:
    values = client.hmget(key, list(names))
    return {n: v for n, v in zip(names, values) if v is not None}


def redis_queue_changes(pipe, key: str, changes: list) -> None:
    sets = {c["flag"]: c["new"] for c in changes if c["action"] != "delete"}
    deletes = [c["flag"] for c in changes if c["action"] == "delete"]
    if sets:
        pipe.hset(key, mapping=sets)
    if deletes:
        pipe.hdel(key, *deletes)


def redis_change_flags(client, key: str, desired: dict, apply: bool, watch_error, attempts: int = 5) -> dict:
    """Read, plan and (with APPLY) write in one optimistic transaction: WATCH the hash, read it,
    MULTI/EXEC the changes; another writer in between makes EXEC fail and the whole thing is
    redone, so ``previous`` is exactly what was replaced."""
    names = list(desired)
    for _attempt in range(attempts):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                result = plan(redis_read_flags(pipe, key, names), desired, "redis")
                if not apply or not result["changes"]:
                    pipe.unwatch()
                    return result
                pipe.multi()
                redis_queue_changes(pipe, key, result["changes"])
                pipe.execute()
                return result
            except watch_error:
                continue
    raise FlagError("Redis hash %s kept changing under %d attempts to update it; try again" % (key, attempts))


# --- audit ------------------------------------------------------------------------------------

def default_run_id(environ=None) -> str | None:
    """The AWX / Tower job id from the environment, when the module runs under AWX."""
    environ = os.environ if environ is None else environ
    for var in RUN_ID_ENV:
        if environ.get(var):
            return environ[var]
    return None


def default_actor(environ=None) -> str:
    environ = os.environ if environ is None else environ
    for var in ("AWX_USER_NAME", "SUDO_USER"):
        if environ.get(var):
            return environ[var]
    try:
        return getpass.getuser()
    except Exception:  # pylint: disable=broad-except  # no passwd entry in a container
        return "uid:%d" % os.getuid()


def audit_records(changes: list, backend: str, target: str, actor: str, run_id) -> list:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    return [{"at": now, "actor": actor, "run_id": run_id, "backend": backend, "target": target,
             "flag": c["flag"], "action": c["action"], "old": c["old"], "new": c["new"]}
            for c in changes]


def audit_file_check(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FlagError("audit file %s: folder %s does not exist; create it or choose another path"
                        % (path, folder))
    if os.path.isdir(path):
        raise FlagError("audit file %s is a directory; give a file path" % path)
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        raise FlagError("audit file %s is not writable by uid %d" % (path, os.getuid()))


def audit_file_write(path: str, records: list) -> None:
    """Append one JSON line per change; O_APPEND so concurrent writers never interleave lines."""
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def pg_create_audit_table(cur, sql, table: str) -> None:
    cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, "
                        "at timestamptz NOT NULL DEFAULT now(), actor text NOT NULL, run_id text, "
                        "backend text NOT NULL, target text NOT NULL, flag text NOT NULL, "
                        "action text NOT NULL, old_value jsonb, new_value jsonb)")
                .format(sql.Identifier(*split_ident(table))))


def pg_write_audit(cur, sql, table: str, records: list) -> None:
    ident = sql.Identifier(*split_ident(table))
    for r in records:
        cur.execute(sql.SQL("INSERT INTO {} (at, actor, run_id, backend, target, flag, action, "
                            "old_value, new_value) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, "
                            "%s::jsonb)").format(ident),
                    (r["at"], r["actor"], r["run_id"], r["backend"], r["target"], r["flag"],
                     r["action"], None if r["old"] is None else json.dumps(r["old"]),
                     None if r["new"] is None else json.dumps(r["new"])))
