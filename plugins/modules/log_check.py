#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate on an application's log (a file since a stored offset, or a journald unit since a stored
cursor): pattern counts and extracted numbers."""
from __future__ import annotations

DOCUMENTATION = r"""
module: log_check
short_description: Gate a rollout on the lines an application logged since a stored offset or cursor
version_added: 0.1.0
description:
  - Runs on the host that writes the log. Reads the log file O(path) from the byte offset
    O(since_offset) of the file whose inode is O(since_inode) (both from the C(offset) and C(inode)
    of the previous run's result), counts the lines matching each of O(patterns) and extracts a
    number from the lines matching each of O(extract), then compares them with their thresholds.
  - Returns C(offset) and C(inode) for the next call, so each run reads only what was written since
    the last one.
  - Reads are bounded by O(max_bytes). When the cap is hit the result says C(truncated=true) and
    C(offset) is where the next call goes on; a threshold broken in what was read still fails the
    gate, otherwise the result is inconclusive (never a pass).
  - Follows rotation. When the inode of O(path) is not O(since_inode) (rename and create) or the file
    is shorter than O(since_offset) (copytruncate), the rest of the old file is read from
    O(rotated_path) from O(since_offset), then the new file from its start. When the rotated file is
    missing or is another file, the new file is read from its start and the result is inconclusive,
    saying which lines were not read. Compressed rotated files are not read.
  - With O(journal_unit) instead of O(path), reads the messages (C(MESSAGE)) the journald unit logged
    after the entry O(since_cursor) (C(journalctl --unit UNIT --output json --after-cursor CURSOR)),
    or since O(since_time) when there is no cursor, and returns the cursor of the last entry read as
    C(cursor) for the next call. The read is bounded by O(max_bytes) of journalctl's JSON output
    (C(head -c) stops journalctl there); an entry cut by the cap is read by the next call.
  - No line since the offset, a log that does not exist or cannot be read, or an extractor that found
    fewer numbers than its C(min_count) make the result inconclusive, never a pass.
options:
  path:
    description:
      - The log file. One of O(path) and O(journal_unit) is required.
    type: path
  journal_unit:
    description:
      - The systemd unit whose journald entries to read (C(journalctl --unit)), instead of a file.
    type: str
  since_cursor:
    description:
      - With O(journal_unit), the journald cursor of the last entry read, usually the C(cursor)
        returned by the previous run; the entries after it are read. Without it, the entries since
        O(since_time), or all the unit's entries (bounded by O(max_bytes)).
    type: str
  since_offset:
    description:
      - Byte offset to start from in the file O(since_inode), usually the C(offset) returned by the
        previous run. V(0) reads from the start (bounded by O(max_bytes)).
      - Required with O(path); not used with O(journal_unit).
    type: int
  since_inode:
    description:
      - Inode of the file O(since_offset) belongs to, usually the C(inode) returned by the previous
        run. Without it a rename-and-create rotation is seen only when the new file is shorter than
        O(since_offset).
    type: int
  rotated_path:
    description:
      - Where the rotation moved the previous file. Defaults to O(path) with C(.1) appended.
    type: path
  since_time:
    description:
      - Optional. Skip the lines older than this ISO 8601 time (a time without a zone is UTC), for
        example the stage's start. Needs O(time_regex) with O(path); a journald entry has its own
        time. The offset (or the cursor) still bounds the read.
    type: str
  time_regex:
    description:
      - Where the timestamp of a line is, as a regex; its first group (or the whole match). A line without one goes with
        the line before it (a stack trace with its message).
    type: str
  time_format:
    description:
      - C(strptime) format of the timestamp; ISO 8601 when omitted.
    type: str
  patterns:
    description:
      - Lines to count.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the count in the result and in messages.
        type: str
        required: true
      regex:
        description: Python regular expression searched in each line.
        type: str
        required: true
      max_count:
        description: Most matching lines allowed (V(0) for no ERROR line at all).
        type: int
      min_count:
        description: Fewest matching lines required (a heartbeat, a job's completion line).
        type: int
  extract:
    description:
      - Numbers to extract, each the first group of the regex in a matching line.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the figures in the result and in messages.
        type: str
        required: true
      regex:
        description:
          - Python regular expression with the number in its first group (see the examples).
        type: str
        required: true
      max_value:
        description: Highest acceptable value (compared with the largest one extracted).
        type: float
      max_mean:
        description: Highest acceptable mean.
        type: float
      max_p95:
        description: Highest acceptable 95th percentile (nearest rank).
        type: float
      min_count:
        description: Fewest numbers needed to judge; fewer make the result inconclusive.
        type: int
        default: 1
  max_bytes:
    description:
      - Most bytes read in one run, over the rotated and the current file. Bytes, or a size such as
        V(64mb) (MiB) or V(1gb).
    type: raw
    default: 64mb
  empty_ok:
    description:
      - Judge a read that found no new line as a reading (every O(patterns) count is 0) instead of
        an inconclusive one. For a log that is written only when something goes wrong, such as an
        error log, where silence is the good news. The log must still exist and be readable, and
        an extractor still needs its C(min_count) numbers.
    type: bool
    default: false
  position_only:
    description:
      - Read nothing; return the current end of the log as C(offset) and its C(inode) (with
        O(journal_unit), the cursor of the unit's last entry as C(cursor)), to start a watch from
        now (for example at the start of a stage). No gate is judged.
    type: bool
    default: false
extends_documentation_fragment:
  - gradual.rollout.gate.verdict
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: A gate only reads; it reads the live log in check mode too.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
notes:
  - The log is read in 1 MiB chunks and only complete lines are counted; a last line still being
    written is left for the next run.
  - A single line longer than O(max_bytes) is never completed; keep O(max_bytes) well above the longest line.
  - As a gate of a rollout plan (its C(type) is C(log_check)), the playbook runs it on each app
    host the gate judges and sets O(since_offset) and O(since_inode) (O(since_cursor) for a
    journald unit) itself - where the log ended when the stage began, or where the last watch's
    reading ended.
  - O(journal_unit) needs C(journalctl) on the host, and a user that may read the unit's journal
    (root, or a member of C(systemd-journal) or C(adm)).
author:
  - gradual.rollout contributors (@gradual-rollout)
"""

EXAMPLES = r"""
- name: Start watching the job log now
  gradual.rollout.log_check:
    path: /var/log/myapp/jobs.log
    since_offset: 0
    position_only: true
  register: job_log_start

- name: No ERROR line, at most 3 queries per job, jobs complete in under 5 s (p95)
  gradual.rollout.log_check:
    path: /var/log/myapp/jobs.log
    since_offset: "{{ job_log_start.offset }}"
    since_inode: "{{ job_log_start.inode }}"
    max_bytes: 64mb
    patterns:
      - name: errors
        regex: "\\bERROR\\b"
        max_count: 0
    extract:
      - name: query_count
        regex: "Query count: (\\d+)"
        max_value: 3
      - name: completed_ms
        regex: "Completed in (\\d+)ms"
        max_p95: 5000
  register: job_log

- name: Start watching a systemd unit's journal now
  gradual.rollout.log_check:
    journal_unit: myapp.service
    position_only: true
  register: unit_log_start

- name: No ERROR message from the unit since then
  gradual.rollout.log_check:
    journal_unit: myapp.service
    since_cursor: "{{ unit_log_start.cursor }}"
    max_bytes: 16mb
    patterns:
      - name: errors
        regex: "\\bERROR\\b"
        max_count: 0

- name: Lines of the error log since the stage started, by their timestamp
  gradual.rollout.log_check:
    path: /var/log/myapp/error.log
    since_offset: 0
    since_time: "2026-01-01T08:00:00Z"
    time_regex: "^(\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d)"
    empty_ok: true
    patterns:
      - name: errors
        regex: "."
        max_count: 0
"""

RETURN = r"""
path:
  description: The log read (null with O(journal_unit)).
  returned: always
  type: str
journal_unit:
  description: The journald unit read.
  returned: with journal_unit
  type: str
source:
  description: The log's name for its position, the path or C(journald:UNIT) (a rollout keeps each host's
    positions under it).
  returned: always
  type: str
  sample: journald:myapp.service
cursor:
  description: With O(journal_unit), the cursor of the last entry read (give it as O(since_cursor));
    O(since_cursor) when no entry was read.
  returned: with journal_unit
  type: str
entries:
  description: With O(journal_unit), the journal entries read.
  returned: with journal_unit
  type: int
position:
  description: Where the next call starts, kept by a rollout under C(source) - C(offset) and C(inode)
    of a file, C(cursor) of a journald unit.
  returned: always
  type: dict
  sample: {"offset": 104857, "inode": 393223}
offset:
  description: Byte offset the next call starts from (give it as O(since_offset)); null with O(journal_unit).
  returned: always
  type: int
  sample: 104857
inode:
  description: Inode of the file C(offset) belongs to (give it as O(since_inode)); null when the log is missing.
  returned: always
  type: int
  sample: 393223
bytes_read:
  description: Bytes read in this run, over the rotated and the current file.
  returned: always
  type: int
lines:
  description: Complete lines judged (after O(since_time)).
  returned: always
  type: int
  sample: 1200
lines_before_since_time:
  description: Lines read but older than O(since_time).
  returned: always
  type: int
truncated:
  description: O(max_bytes) was reached before the end of the log.
  returned: always
  type: bool
rotated:
  description: The log was rotated since O(since_offset).
  returned: always
  type: bool
files_read:
  description: The byte ranges read, C(file) being V(rotated) or V(current).
  returned: always
  type: list
  elements: dict
  sample: [{"file": "rotated", "start": 1000, "end": 5000}, {"file": "current", "start": 0, "end": 800}]
patterns:
  description: Per pattern name, the count of matching lines and the first of them (200 characters).
  returned: always
  type: dict
  sample: {"errors": {"count": 0, "first": null}}
extractors:
  description: Per extractor name, how many numbers were extracted, and their max, mean and p95.
  returned: always
  type: dict
  sample: {"query_count": {"count": 48, "max": 3.0, "mean": 2.1, "p95": 3.0}}
read_at:
  description: When the log was read (UTC, ISO 8601), for the watch history.
  returned: always
  type: str
  sample: "2026-01-01T12:00:00.000000+00:00"
inconclusive:
  description: Nothing or not everything could be judged; see C(gate.reason).
  returned: always
  type: bool
gate:
  description: The verdict; null with O(position_only).
  returned: always
  type: dict
  sample: {"passed": false, "inconclusive": false, "failures": [],
           "reason": "query_count max 10001 exceeds max_value 3"}
"""

import datetime
import io
import re
import shlex

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.module_utils import log_gate as L


def argument_spec() -> dict:
    return dict(
        path=dict(type="path"),
        journal_unit=dict(type="str"),
        since_cursor=dict(type="str"),
        since_offset=dict(type="int"),
        since_inode=dict(type="int"),
        rotated_path=dict(type="path"),
        since_time=dict(type="str"),
        time_regex=dict(type="str"),
        time_format=dict(type="str"),
        patterns=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True), regex=dict(type="str", required=True),
            max_count=dict(type="int"), min_count=dict(type="int"))),
        extract=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True), regex=dict(type="str", required=True),
            max_value=dict(type="float"), max_mean=dict(type="float"), max_p95=dict(type="float"),
            min_count=dict(type="int", default=1))),
        max_bytes=dict(type="raw", default="64mb"),
        empty_ok=dict(type="bool", default=False),
        position_only=dict(type="bool", default=False),
        **G.verdict_argument_spec(),
    )


def check_options(p: dict) -> dict:
    """Compiled rules, the byte cap and the since time; raises GateInputError naming a bad value."""
    if bool(p["path"]) == bool(p["journal_unit"]):
        raise G.GateInputError("give one of path (a log file) and journal_unit (a systemd unit's journal)")
    if p["journal_unit"]:
        for name in ("since_offset", "since_inode", "rotated_path"):
            if p[name] is not None:
                raise G.GateInputError("%s=%r is for a log file (path); a journald unit's position is since_cursor"
                                       % (name, p[name]))
    elif p["since_cursor"] is not None:
        raise G.GateInputError("since_cursor is for journal_unit; a log file's position is since_offset")
    elif p["since_offset"] is None:
        raise G.GateInputError("since_offset is required with path (0 reads from the start)")
    if p["since_offset"] is not None and p["since_offset"] < 0:
        raise G.GateInputError("since_offset=%d must be >= 0 (a byte offset)" % p["since_offset"])
    max_bytes = G.parse_size(p["max_bytes"], "max_bytes")
    if max_bytes <= 0:
        raise G.GateInputError("max_bytes=%r must be > 0" % (p["max_bytes"],))
    patterns, extractors = L.compile_rules(p["patterns"], p["extract"])
    if not p["position_only"] and not patterns and not extractors:
        raise G.GateInputError("give patterns or extract (what to judge in the log), or position_only: true")
    since = None
    if p["since_time"] is not None:
        if not p["time_regex"] and not p["journal_unit"]:
            raise G.GateInputError("since_time=%r needs time_regex (where a line's timestamp is)" % p["since_time"])
        try:
            since = L.parse_time(p["since_time"], None)
        except ValueError:
            raise G.GateInputError("since_time=%r is not an ISO 8601 time such as 2026-01-01T08:00:00Z"
                                   % p["since_time"]) from None
    if p["time_regex"]:
        try:
            re.compile(p["time_regex"])
        except re.error as exc:
            raise G.GateInputError("time_regex %r does not compile: %s" % (p["time_regex"], exc)) from None
    return {"patterns": patterns, "extractors": extractors, "max_bytes": max_bytes, "since": since}


def empty(p: dict, opts: dict) -> dict:
    matcher = L.Matcher(opts["patterns"], opts["extractors"])
    out = {"path": p["path"], "source": L.source_key(p["path"], p["journal_unit"]), "offset": p["since_offset"],
           "inode": p["since_inode"], "bytes_read": 0, "truncated": False, "rotated": False, "files_read": []}
    if p["journal_unit"]:
        out.update(journal_unit=p["journal_unit"], cursor=p["since_cursor"], entries=0)
    out.update(matcher.figures())
    return out


def position(out: dict) -> dict:
    """Where the next reading starts: {offset, inode} of a file, {cursor} of a journald unit."""
    return {"cursor": out["cursor"]} if out.get("journal_unit") else {"offset": out["offset"], "inode": out["inode"]}


def last_cursor(module, argv: list):
    """The cursor of the unit's last entry (journal_position_command), None when it has none."""
    rc, stdout, stderr = module.run_command(argv)
    if rc != 0:
        raise OSError("%s exited %d: %s" % (" ".join(argv), rc, stderr.strip()[-500:]))
    cursor = None
    for line in stdout.splitlines():
        found = re.search(r'"__CURSOR"\s*:\s*"([^"]+)"', line)
        if found:
            cursor = found.group(1)
    return cursor


def read_journal(module, argv: list, max_bytes: int, matcher) -> dict:
    """Run journalctl ARGV and read at most MAX_BYTES of its output: ``head -c`` takes one byte
    more (which says there was more) and closes the pipe, which stops journalctl."""
    cmd = "%s | head -c %d" % (" ".join(shlex.quote(a) for a in argv), max_bytes + 1)
    _rc, stdout, stderr = module.run_command(cmd, use_unsafe_shell=True, encoding=None)
    done = L.read_journal(io.BytesIO(stdout), max_bytes, matcher)
    # journalctl's exit status is lost in the pipe; with --quiet it writes to stderr only on an error
    error = to_native(stderr, errors="surrogate_or_replace").strip()
    if error and not done["entries"]:
        raise OSError("journalctl: %s" % error[-500:])
    return done


def run_journal(module, p: dict, opts: dict) -> dict:
    """Read and judge a journald unit's entries after since_cursor (or since since_time)."""
    out = empty(p, opts)
    journalctl = module.get_bin_path("journalctl")
    if not journalctl:
        out["gate"] = G.gate([], "journalctl is not on this host: journal_unit needs systemd's journal")
        return out
    try:
        if p["position_only"]:
            out.update(cursor=last_cursor(module, L.journal_position_command(journalctl, p["journal_unit"])),
                       gate=None)
            return out
        matcher = L.Matcher(opts["patterns"], opts["extractors"], opts["since"])
        argv = L.journal_command(journalctl, p["journal_unit"], p["since_cursor"], opts["since"])
        done = read_journal(module, argv, opts["max_bytes"], matcher)
    except OSError as exc:
        out["gate"] = G.gate([], "the journal of %s cannot be read: %s" % (p["journal_unit"], to_native(exc)))
        return out
    out.update(matcher.figures())
    out.update(cursor=done["cursor"] or p["since_cursor"], entries=done["entries"], bytes_read=done["bytes_read"],
               truncated=done["truncated"])
    out["gate"] = L.judge(opts["patterns"], opts["extractors"], out, done["truncated"], None, empty_ok=p["empty_ok"])
    return out


def run(p: dict, opts: dict) -> dict:
    """Read and judge; a log that cannot be read is inconclusive with the reason."""
    out = empty(p, opts)
    current = L.stat_pair(p["path"])
    if current is None:
        out["gate"] = G.gate([], "the log %s does not exist" % p["path"])
        return out
    if p["position_only"]:
        out.update(offset=current[1], inode=current[0], gate=None)
        return out
    rotated_path = p["rotated_path"] or p["path"] + ".1"
    rotated = L.stat_pair(rotated_path)
    segments, note = L.read_plan(p["since_offset"], p["since_inode"], current, rotated)
    matcher = L.Matcher(opts["patterns"], opts["extractors"], opts["since"], p["time_regex"], p["time_format"])
    try:
        done = L.read_lines(segments, {L.ROTATED: rotated_path, L.CURRENT: p["path"]}, opts["max_bytes"], matcher)
    except OSError as exc:
        out["gate"] = G.gate([], "the log cannot be read: %s" % to_native(exc))
        return out
    inode = current[0] if done["stopped_in"] == L.CURRENT else rotated[0]
    out.update(matcher.figures())
    out.update(offset=done["offset"], inode=inode, bytes_read=done["bytes_read"], truncated=done["truncated"],
               rotated=segments[0][0] == L.ROTATED or note is not None,
               files_read=[dict(f, path=rotated_path if f["file"] == L.ROTATED else p["path"])
                           for f in done["files"]])
    out["gate"] = L.judge(opts["patterns"], opts["extractors"], out, done["truncated"], note, empty_ok=p["empty_ok"])
    return out


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    try:
        opts = check_options(p)
    except G.GateInputError as exc:
        module.fail_json(msg=str(exc))
    out = run_journal(module, p, opts) if p["journal_unit"] else run(p, opts)
    out["position"] = position(out)
    out["read_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    if out["gate"] is None:
        out["inconclusive"] = False
        module.exit_json(changed=False, **out)
    out["inconclusive"] = out["gate"]["inconclusive"]
    if G.fails_task(out, p["fail_on_inconclusive"]):
        module.fail_json(msg="log_check gate failed: " + out["gate"]["reason"], **out)
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
