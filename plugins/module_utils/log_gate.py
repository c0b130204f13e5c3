# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure part of gradual.rollout.log_check: which bytes of a log (and of its rotated file) to
read since a stored offset, a bounded reader that hands over complete lines, the journalctl command
and bounded reader of a journald unit's entries since a cursor, and the matcher that counts
patterns and extracts numbers.

No Ansible import: the unit tests run it on files in a temporary folder. Figures (max, mean, p95)
come from ``gates.summarize``, the percentile every gate uses.
"""
from __future__ import annotations

import datetime
import json
import os
import re

from ansible_collections.gradual.rollout.plugins.module_utils import gates as G

CHUNK = 1 << 20
CURRENT = "current"
ROTATED = "rotated"
JOURNALD = "journald:"


def source_key(path=None, journal_unit=None) -> str:
    """The name under which a log's position is kept (host -> source -> position): the file's path,
    or ``journald:UNIT`` for a journald unit."""
    return str(path) if path else JOURNALD + str(journal_unit)


def read_plan(since_offset: int, since_inode, current: tuple, rotated) -> tuple:
    """(segments, note): the byte ranges to read since SINCE_OFFSET of the file SINCE_INODE.

    CURRENT is (inode, size) of the log now; ROTATED is (inode, size) of the rotated file (path.1),
    or None. A segment is (ROTATED | CURRENT, start, end). The log was rotated when its inode is
    not SINCE_INODE (rename and create) or it is shorter than SINCE_OFFSET (copytruncate): the rest
    of the old file is read from the rotated file, then the new one from 0. NOTE says what could
    not be read (the rotated file missing, or another file), or is None.
    """
    ino, size = current
    moved = since_inode is not None and ino != since_inode
    if not moved and size >= since_offset:
        return [(CURRENT, since_offset, size)], None
    old_ok = rotated is not None and rotated[1] >= since_offset and (
        rotated[0] == since_inode if moved else rotated[0] != ino)
    if old_ok:
        return [(ROTATED, since_offset, rotated[1]), (CURRENT, 0, size)], None
    how = "its inode changed (%s -> %s)" % (since_inode, ino) if moved else \
        "it is shorter (%d bytes) than the offset %d" % (size, since_offset)
    return [(CURRENT, 0, size)], ("the log was rotated (%s) and the rotated file is missing or is not "
                                  "the file read last time: the lines written after offset %d and "
                                  "before the rotation were not read" % (how, since_offset))


def read_lines(segments: list, paths: dict, max_bytes: int, on_line, chunk: int = CHUNK) -> dict:
    """Read SEGMENTS (see read_plan) of PATHS {ROTATED: path, CURRENT: path}, at most MAX_BYTES in
    all, calling ON_LINE(text) for each complete line. A last line without its newline is left
    for the next call in the current file (it is still being written) and read as a line in the
    rotated one (which no longer grows).

    Returns {bytes_read, truncated, stopped_in (ROTATED | CURRENT), offset (where the next read
    starts in that file), files: [{file, start, end}]}.
    """
    budget = max_bytes
    done = {"bytes_read": 0, "truncated": False, "stopped_in": CURRENT, "offset": 0, "files": []}
    for which, start, end in segments:
        pos = start
        rest = b""
        with open(paths[which], "rb") as handle:
            handle.seek(start)
            while pos < end:
                size = min(chunk, end - pos, budget)
                if size <= 0:
                    done["truncated"] = True
                    break
                data = handle.read(size)
                if not data:
                    break
                pos += len(data)
                budget -= len(data)
                done["bytes_read"] += len(data)
                *lines, rest = (rest + data).split(b"\n")
                for line in lines:
                    on_line(line.decode("utf-8", "replace"))
        if rest and which == ROTATED and not done["truncated"]:
            on_line(rest.decode("utf-8", "replace"))
            rest = b""
        done["files"].append({"file": which, "start": start, "end": pos - len(rest)})
        done["stopped_in"], done["offset"] = which, pos - len(rest)
        if done["truncated"]:
            break
    return done


def journal_command(journalctl: str, unit: str, cursor=None, since=None) -> list:
    """argv of journalctl for UNIT's entries as JSON, oldest first: those after CURSOR (the
    ``__CURSOR`` of the last entry read), else those since SINCE (an aware datetime), else all."""
    argv = [journalctl, "--no-pager", "--quiet", "--output=json", "--unit=%s" % unit]
    if cursor:
        argv.append("--after-cursor=%s" % cursor)
    elif since is not None:
        argv.append("--since=@%d" % int(since.timestamp()))
    return argv


def journal_position_command(journalctl: str, unit: str) -> list:
    """argv of journalctl for UNIT's last entry (its cursor is where the next read starts)."""
    return [journalctl, "--no-pager", "--quiet", "--output=json", "--unit=%s" % unit, "--lines=1"]


def journal_message(entry: dict) -> str:
    """An entry's MESSAGE as text: journald gives a binary one as a list of byte values."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):
        return bytes(b for b in message if isinstance(b, int) and 0 <= b < 256).decode("utf-8", "replace")
    return "" if message is None else str(message)


def read_journal(stream, max_bytes: int, on_line, chunk: int = 1 << 16) -> dict:
    """Read journalctl's JSON output from STREAM (a binary file), at most MAX_BYTES, calling
    ON_LINE(message, when) for each complete entry (when: its time, an aware datetime, by which the
    matcher skips the entries before its since time).

    Returns {bytes_read, truncated (MAX_BYTES reached before the end), cursor (of the last entry
    handed over, None when none was), entries}. An entry cut by the cap is not handed over: the
    next read starts after CURSOR, at that entry."""
    done = {"bytes_read": 0, "truncated": False, "cursor": None, "entries": 0}
    rest = b""
    budget = max_bytes
    while True:
        data = stream.read(min(chunk, budget)) if budget > 0 else b""
        if not data:
            # the cap is reached when more was to come; a stream that ends exactly there is complete
            done["truncated"] = budget <= 0 and bool(rest or stream.read(1))
            break
        budget -= len(data)
        done["bytes_read"] += len(data)
        *lines, rest = (rest + data).split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                entry = json.loads(line.decode("utf-8", "replace"))
            except ValueError:
                continue  # not an entry (journalctl's own notice): nothing to judge, no position
            when = None
            if entry.get("__REALTIME_TIMESTAMP"):
                when = datetime.datetime.fromtimestamp(int(entry["__REALTIME_TIMESTAMP"]) / 1e6,
                                                       datetime.timezone.utc)
            on_line(journal_message(entry), when)
            done["entries"] += 1
            done["cursor"] = entry.get("__CURSOR") or done["cursor"]
    return done


def parse_time(text: str, fmt: str | None) -> datetime.datetime:
    """A timestamp by strptime FMT, or ISO 8601 without one; a naive time is taken as UTC."""
    text = text.strip()
    if fmt:
        when = datetime.datetime.strptime(text, fmt)
    else:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace(",", ".", 1)
                                               if len(text) > 19 else text)
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def compile_rules(patterns: list, extract: list) -> tuple:
    """(patterns, extractors) with compiled regexes; raises GateInputError naming a bad one."""
    seen = set()
    out = ([], [])
    for kind, rules, bucket in (("patterns", patterns or [], out[0]), ("extract", extract or [], out[1])):
        for index, rule in enumerate(rules):
            name = rule.get("name") or "%s[%d]" % (kind, index)
            if name in seen:
                raise G.GateInputError("%s name %r is used twice; give each pattern and extractor its "
                                       "own name" % (kind, name))
            seen.add(name)
            try:
                regex = re.compile(rule["regex"])
            except (re.error, TypeError) as exc:
                raise G.GateInputError("%s %s: regex %r does not compile: %s"
                                       % (kind, name, rule.get("regex"), exc)) from None
            if kind == "extract" and regex.groups < 1:
                raise G.GateInputError("extract %s: regex %r has no group; put the number in one, "
                                       "e.g. 'Query count: (\\d+)'" % (name, rule["regex"]))
            for key, value in rule.items():
                if key.startswith(("max_", "min_")) and value is not None and value < 0:
                    raise G.GateInputError("%s %s: %s=%s must be >= 0" % (kind, name, key, value))
            bucket.append(dict(rule, name=name, compiled=regex))
    return out


class Matcher:
    """Counts pattern matches and collects the numbers of the extractors, line by line, skipping
    the lines older than SINCE (a line without a timestamp goes with the line before it)."""

    def __init__(self, patterns: list, extractors: list, since=None, time_regex=None, time_format=None):
        self.patterns = patterns
        self.extractors = extractors
        self.since = since
        self.time_regex = re.compile(time_regex) if time_regex else None
        self.time_format = time_format
        self.counts = {p["name"]: 0 for p in patterns}
        self.first = {p["name"]: None for p in patterns}
        self.values = {e["name"]: [] for e in extractors}
        self.lines = 0
        self.skipped = 0
        self._keep = since is None

    def __call__(self, line: str, when=None) -> None:
        if self.since is not None and when is not None:
            # a journald entry has its own time
            self._keep = when >= self.since
        elif self.since is not None and self.time_regex is not None:
            found = self.time_regex.search(line)
            if found:
                try:
                    self._keep = parse_time(found.group(1) if self.time_regex.groups else found.group(0),
                                            self.time_format) >= self.since
                except ValueError:
                    pass  # not a timestamp after all: the line goes with the one before
        if not self._keep:
            self.skipped += 1
            return
        self.lines += 1
        for rule in self.patterns:
            if rule["compiled"].search(line):
                self.counts[rule["name"]] += 1
                if self.first[rule["name"]] is None:
                    self.first[rule["name"]] = line[:200]
        for rule in self.extractors:
            found = rule["compiled"].search(line)
            if found:
                try:
                    self.values[rule["name"]].append(float(found.group(1)))
                except (TypeError, ValueError):
                    pass  # the group matched no number: the line does not count

    def figures(self) -> dict:
        return {
            "lines": self.lines,
            "lines_before_since_time": self.skipped,
            "patterns": {name: {"count": count, "first": self.first[name]} for name, count in self.counts.items()},
            "extractors": {name: dict(G.summarize(values), count=len(values))
                           for name, values in self.values.items()},
        }


def judge(patterns: list, extractors: list, figures: dict, truncated: bool, note, empty_ok: bool = False) -> dict:
    """The gate of a read: a threshold broken in what was read fails (even when the read was cut
    short); otherwise no line (unless EMPTY_OK), the byte cap, an unread part of a rotated log, or an
    extractor with fewer numbers than its min_count make the result inconclusive."""
    failures = []
    why = []
    for rule in patterns:
        count = figures["patterns"][rule["name"]]["count"]
        failures.append(G.check_max("%s count" % rule["name"], count, "max_count", rule.get("max_count")))
        failures.append(G.check_min("%s count" % rule["name"], count, "min_count", rule.get("min_count")))
    for rule in extractors:
        got = figures["extractors"][rule["name"]]
        wanted = rule.get("min_count")
        wanted = 1 if wanted is None else wanted
        if got["count"] < wanted:
            why.append("%s: %d number(s) extracted, fewer than min_count %d" % (rule["name"], got["count"], wanted))
        for figure, option in (("max", "max_value"), ("mean", "max_mean"), ("p95", "max_p95")):
            failures.append(G.check_max("%s %s" % (rule["name"], figure), got[figure], option, rule.get(option)))
    if figures["lines"] == 0 and not empty_ok:
        why.insert(0, "no line since the offset" if "cursor" not in figures else "no entry since the cursor")
    if truncated:
        why.insert(0, "max_bytes reached before the end of the log: the rest is read by the next call")
    if note:
        why.append(note)
    failures = [f for f in failures if f]
    if failures:
        return G.gate(failures)
    return G.gate([], "; ".join(why) if why else None)


def stat_pair(path: str):
    """(inode, size) of PATH, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size
