#!/usr/bin/python
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate on an application's log file since a stored offset: pattern counts and extracted numbers."""
from __future__ import annotations

DOCUMENTATION = r"""
module: log_check
short_description: Gate a rollout on the lines an application logged since a stored offset
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
  - No line since the offset, a log that does not exist or cannot be read, or an extractor that found
    fewer numbers than its C(min_count) make the result inconclusive, never a pass.
options:
  path:
    description:
      - The log file.
    type: path
    required: true
  since_offset:
    description:
      - Byte offset to start from in the file O(since_inode), usually the C(offset) returned by the
        previous run. V(0) reads from the start (bounded by O(max_bytes)).
    type: int
    required: true
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
        example the stage's start. Needs O(time_regex). The offset still bounds the read.
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
      - Read nothing; return the current end of the log as C(offset) and its C(inode), to start a
        watch from now (for example at the start of a stage). No gate is judged.
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
    host the gate judges and sets O(since_offset) and O(since_inode) itself - where the log ended
    when the stage began, or where the last watch's reading ended.
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
  description: The log read.
  returned: always
  type: str
offset:
  description: Byte offset the next call starts from (give it as O(since_offset)).
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
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.gradual.rollout.plugins.module_utils import gates as G
from ansible_collections.gradual.rollout.plugins.module_utils import log_gate as L


def argument_spec() -> dict:
    return dict(
        path=dict(type="path", required=True),
        since_offset=dict(type="int", required=True),
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
    if p["since_offset"] < 0:
        raise G.GateInputError("since_offset=%d must be >= 0 (a byte offset)" % p["since_offset"])
    max_bytes = G.parse_size(p["max_bytes"], "max_bytes")
    if max_bytes <= 0:
        raise G.GateInputError("max_bytes=%r must be > 0" % (p["max_bytes"],))
    patterns, extractors = L.compile_rules(p["patterns"], p["extract"])
    if not p["position_only"] and not patterns and not extractors:
        raise G.GateInputError("give patterns or extract (what to judge in the log), or position_only: true")
    since = None
    if p["since_time"] is not None:
        if not p["time_regex"]:
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
    out = {"path": p["path"], "offset": p["since_offset"], "inode": p["since_inode"], "bytes_read": 0,
           "truncated": False, "rotated": False, "files_read": []}
    out.update(matcher.figures())
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
    out = run(p, opts)
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
