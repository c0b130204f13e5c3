#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: config_files
short_description: Write a set of configuration files in one round trip, or put their backups back
version_added: "0.1.0"
description:
  - Writes several files whose content the controller already rendered (for example with
    C(lookup('ansible.builtin.template', ...))), each atomically, and sets their owner, group and
    mode. One module call for the whole set, where M(ansible.builtin.template) costs two remote
    calls per file even when nothing changes.
  - A file is replaced only when its content differs. The new content gets its owner, group and
    mode before it is renamed over the old file, so it is never readable with looser permissions.
  - With O(backup=true) the previous version of every replaced file is kept beside it and its
    path returned, so a caller can put the set back when the service refuses it.
  - Every file is checked before any is written; a bad entry changes nothing.
  - With O(restore), puts the previous versions back instead. Each entry's C(backup_file) (from
    the RV(files) of an earlier call with O(backup=true)) is copied over its C(dest) the same
    atomic way, with the owner, group and mode the backup carries (a backup keeps those of the
    file it was made from), unless O(owner), O(group), O(mode) or the entry's own say otherwise.
    Every backup is checked before any file is touched.
author:
  - gradual.rollout maintainers (@gradual-rollout)
options:
  files:
    description:
      - The files to write.
      - Exactly one of O(files) and O(restore) is required.
    type: list
    elements: dict
    suboptions:
      dest:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description:
          - The whole content of the file. Not logged (configuration files may carry secrets or
            their hashes).
        type: str
        required: true
      owner:
        description: Owner of the file. Defaults to O(owner).
        type: str
      group:
        description: Group of the file. Defaults to O(group).
        type: str
      mode:
        description: Mode of the file, octal string or symbolic. Defaults to O(mode).
        type: raw
  restore:
    description:
      - Put previous versions back instead of writing new content. Takes the RV(files) list of an
        earlier call with O(backup=true), or entries of it, as they are.
      - Each entry's C(backup_file) is copied over its C(dest) atomically (a temporary file beside
        C(dest) gets the content, owner, group and mode first, then is renamed over it). The backup
        itself is kept.
      - Owner, group and mode are those of the backup (the ones the file had when the backup was
        made), unless the entry or O(owner), O(group), O(mode) set them.
      - An entry without C(backup_file) (a file that was created, or whose content did not change)
        is left alone and listed in RV(no_backup).
      - Every entry is checked before any file is touched; a missing backup fails the task naming
        it, and nothing changes.
      - Exactly one of O(files) and O(restore) is required. O(backup), O(backups_kept) and
        O(create_parents) do not apply.
    type: list
    elements: dict
    version_added: "0.1.0"
    suboptions:
      dest:
        description: Absolute path of the file to put back.
        type: path
        required: true
      backup_file:
        description: The backup to put back over O(restore[].dest).
        type: path
      owner:
        description: Owner of the restored file. Defaults to O(owner), then the backup's owner.
        type: str
      group:
        description: Group of the restored file. Defaults to O(group), then the backup's group.
        type: str
      mode:
        description:
          - Mode of the restored file. Defaults to O(mode), then the backup's mode.
          - A symbolic mode (C(o-r)) counts from the backup's mode.
        type: raw
      changed:
        description: Ignored; accepted so that an entry of an earlier result can be passed as it is.
        type: bool
      content_changed:
        description: Ignored, as O(restore[].changed).
        type: bool
      created:
        description: Ignored, as O(restore[].changed).
        type: bool
      backups_removed:
        description: Ignored, as O(restore[].changed).
        type: list
        elements: str
  owner:
    description:
      - Owner of the files that set none. Unset keeps the current owner (new files get the
        module's user).
      - With O(restore), unset takes the backup's owner.
    type: str
  group:
    description:
      - Group of the files that set none.
      - With O(restore), unset takes the backup's group.
    type: str
  mode:
    description:
      - Mode of the files that set none. Unset keeps the current mode; a new file then gets
        C(0600).
      - With O(restore), unset takes the backup's mode; a symbolic mode counts from the backup's mode.
    type: raw
  backup:
    description: Keep the previous version of each replaced file (C(DEST.PID.DATE~)).
    type: bool
    default: false
  backups_kept:
    description:
      - With O(backup=true), how many backups of each file to keep, the one just made included;
        older C(DEST.PID.DATE~) files of a replaced file are removed. C(0) keeps them all.
      - Only files named the way O(backup) names them are touched.
    type: int
    default: 0
  create_parents:
    description: Create a missing parent folder (mode C(0755), owned by the module's user).
      Otherwise a missing folder fails the task before anything is written.
    type: bool
    default: false
attributes:
  check_mode:
    description: Reports which files would change (or be restored), writes nothing.
    support: full
  diff_mode:
    description: A unified diff of each file whose content changes (or would, by a restore).
    support: full
notes:
  - The content travels as a module argument; it is marked C(no_log) so that it is not echoed in
    the invocation. Ansible's own line in the remote syslog or journal ("Invoked with ...") masks a
    no_log value of a list element only when it is one line long, so a task whose content holds a
    secret needs C(no_log) on the task itself, which keeps that line from being written at all. C(--diff) shows a unified diff of each changed
    file, as M(ansible.builtin.template) would (a line equal to the whole content of a one-line
    file shows masked).
  - A restore carries no content in its arguments, only paths, but its diff shows the content put
    back. Set the task keyword C(diff) to C(false) for files holding secrets.
  - The file's SELinux context is not set; it is the one a new file gets in the folder, as for a
    write.
seealso:
  - module: ansible.builtin.template
  - module: ansible.builtin.copy
"""

EXAMPLES = r"""
- name: Write postgresql.conf and pg_hba.conf together (previous versions kept)
  gradual.rollout.config_files:
    files:
      - dest: /etc/postgresql/15/main/postgresql.conf
        content: "{{ lookup('ansible.builtin.template', 'postgresql.conf.j2') }}"
        mode: "0644"
      - dest: /etc/postgresql/15/main/pg_hba.conf
        content: "{{ lookup('ansible.builtin.template', 'pg_hba.conf.j2') }}"
        mode: "0600"
    owner: postgres
    group: postgres
    backup: true
  register: pg_files

- name: Put back the files the server refused (owner, group and mode of each backup)
  gradual.rollout.config_files:
    restore: "{{ pg_files.files }}"
  register: pg_restored

- name: Put back a file holding secrets, with the mode the role wants
  gradual.rollout.config_files:
    restore: "{{ userlist_file.files }}"
    owner: postgres
    group: postgres
    mode: "0600"
  diff: false
"""

RETURN = r"""
files:
  description: One entry per file, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    dest:
      description: Path of the file.
      type: str
      sample: /etc/postgresql/15/main/postgresql.conf
    changed:
      description: Whether the content or an attribute changed (or would, in check mode).
      type: bool
    content_changed:
      description: Whether the content changed (or would).
      type: bool
    created:
      description: Whether the file did not exist before.
      type: bool
      returned: when writing (O(files))
    restored:
      description:
        - Whether the file now has the content and attributes of its backup (or would, in check
          mode). False for an entry without C(backup_file), which is left alone.
      type: bool
      returned: with O(restore)
    backup_file:
      description:
        - When writing, the previous version, when O(backup=true) and the content was replaced.
        - With O(restore), the backup put back, as given.
      type: str
      returned: when a backup was made, or given to O(restore)
      sample: /etc/postgresql/15/main/postgresql.conf.4711.2026-12-01@10:00:00~
    backups_removed:
      description: Older backups removed because of O(backups_kept), oldest first.
      type: list
      elements: str
      returned: when a backup was made and O(backups_kept) is set
changed_files:
  description: Paths of the files that changed.
  returned: always
  type: list
  elements: str
no_backup:
  description: Paths of the O(restore) entries without C(backup_file), left alone.
  returned: with O(restore)
  type: list
  elements: str
"""

import difflib
import grp
import os
import pwd
import re
import stat
import tempfile
from typing import Callable

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text

# What a new file starts as (tempfile.mkstemp): the mode a symbolic mode of a new file counts from.
NEW_FILE_STAT = os.stat_result((stat.S_IFREG | 0o600, 0, 0, 0, 0, 0, 0, 0, 0, 0))


def _read(path: str) -> bytes | None:
    """The current content of PATH, or None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def unified_diff(dest: str, old: bytes | None, new: bytes) -> str:
    """A unified diff of the file. Prepared here because the content is a no_log argument: a
    before/after pair would come back masked, while the diff's prefixed lines do not match it."""
    before = to_text(old or b"", errors="surrogate_or_replace").splitlines(keepends=True)
    after = to_text(new, errors="surrogate_or_replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, fromfile=dest if old is not None else "/dev/null",
                                        tofile=dest))


def check_entries(module: AnsibleModule, entries: list[dict], field: str = "files") -> None:
    """Fail, before anything is written, on a relative or repeated path, a path that is a folder,
    a missing parent folder (unless create_parents), or a mode that is neither octal nor
    symbolic. FIELD names the option in messages."""
    seen = set()
    for entry in entries:
        dest = entry["dest"]
        if not os.path.isabs(dest):
            module.fail_json(msg=f"{field}[].dest must be an absolute path, got {dest!r}")
        if dest in seen:
            module.fail_json(msg=f"{field}[].dest {dest!r} is given twice: each file may appear once")
        seen.add(dest)
        if os.path.isdir(dest):
            module.fail_json(msg=f"{field}[].dest {dest!r} is a folder, expected a file path")
        parent = os.path.dirname(dest)
        if not os.path.isdir(parent) and not module.params["create_parents"]:
            hint = " (create it first or set create_parents: true)" if field == "files" else ""
            module.fail_json(msg=f"the folder {parent!r} of {dest!r} does not exist{hint}")
        check_mode_value(module, file_args(module, entry, dest)["mode"], dest, field)
        if not module.check_mode:
            # A fresh host in check mode may not have the service's user yet.
            check_owner(module, dest, entry.get("owner") or module.params["owner"], pwd.getpwnam, "owner")
            check_owner(module, dest, entry.get("group") or module.params["group"], grp.getgrnam, "group")


def check_mode_value(module: AnsibleModule, mode, dest: str, field: str) -> None:
    """Fail when MODE is neither octal nor symbolic (which mode it counts from does not matter)."""
    try:
        mode_number(mode, NEW_FILE_STAT)
    except ValueError as exc:
        verb = "restored" if field == "restore" else "written"
        module.fail_json(msg=f"mode {mode!r} of {dest!r}: {to_native(exc)}; expected octal (0640) or "
                             f"symbolic (u=rw,g=r,o=): nothing was {verb}")


def check_owner(module: AnsibleModule, dest: str, name: str | None, lookup, what: str) -> None:
    """Fail when the user or group NAME (not a number) does not exist on this host."""
    if name is None or name.isdigit():
        return
    try:
        lookup(name)
    except KeyError:
        module.fail_json(msg=f"{what} {name!r} of {dest!r} does not exist on this host")


def file_args(module: AnsibleModule, entry: dict, path: str) -> dict:
    """The attributes wanted for ENTRY, applied to PATH."""
    params = module.params
    return {
        "path": path,
        "owner": entry.get("owner") or params["owner"],
        "group": entry.get("group") or params["group"],
        "mode": entry.get("mode") if entry.get("mode") is not None else params["mode"],
        "attributes": None,
        "secontext": None,
    }


def replace_atomically(dest: str, content: bytes, prepare: Callable[[str], object]) -> None:
    """Write CONTENT to a temporary file beside DEST, let PREPARE(temporary path) give it its
    owner, group and mode, then rename it over DEST: DEST is at every moment either the old file
    or the new one, never a partial one nor one with looser permissions."""
    parent = os.path.dirname(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", dir=parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        prepare(tmp)
        os.replace(tmp, dest)
    except BaseException:  # fail_json in PREPARE exits: no temporary file left behind either
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_one(module: AnsibleModule, entry: dict, new: bytes, old: bytes | None) -> dict:
    """Write NEW to entry['dest'] atomically with its attributes set first; returns the backup."""
    dest = entry["dest"]
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755, exist_ok=True)
    result = {}
    if old is not None and module.params["backup"]:
        result["backup_file"] = module.backup_local(dest)

    def prepare(tmp: str) -> None:
        args = file_args(module, entry, tmp)
        if old is not None:
            # Keep what the caller leaves unset from the file being replaced (-1: no change).
            current = os.stat(dest)
            os.chown(tmp, current.st_uid if args["owner"] is None else -1,
                     current.st_gid if args["group"] is None else -1)
            if args["mode"] is None:
                os.chmod(tmp, current.st_mode & 0o7777)
        module.set_fs_attributes_if_different(args, False)

    replace_atomically(dest, new, prepare)
    if "backup_file" in result and module.params["backups_kept"]:
        # only once the new file is in place: a failed write keeps every older backup
        result["backups_removed"] = prune_backups(dest, module.params["backups_kept"])
    return result


def prune_backups(dest: str, keep: int) -> list[str]:
    """Remove all but the KEEP newest DEST.PID.YYYY-MM-DD@HH:MM:SS~ backups (the names
    AnsibleModule.backup_local gives); the removed paths, oldest first."""
    name = re.compile(re.escape(os.path.basename(dest)) + r"\.\d+\.(\d{4}-\d{2}-\d{2}@\d{2}:\d{2}:\d{2})~$")
    parent = os.path.dirname(dest)
    found = []
    for entry in os.scandir(parent):
        match = name.fullmatch(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            # the name's second first; the inode's change time (set when the copy was made) within it
            found.append((match.group(1), entry.stat(follow_symlinks=False).st_ctime_ns, entry.path))
    found.sort()
    removed = [path for _when, _ctime, path in found[:max(0, len(found) - keep)]]
    for path in removed:
        os.unlink(path)
    return removed


def apply_one(module: AnsibleModule, entry: dict) -> tuple[dict, dict | None]:
    """Bring one file to its content and attributes; its result and its diff (or None)."""
    dest = entry["dest"]
    new = to_bytes(entry["content"], errors="surrogate_or_strict")
    old = _read(dest)
    content_changed = old != new
    result = {"dest": dest, "created": old is None, "content_changed": content_changed}
    diff = None
    if content_changed and module._diff:
        diff = {"prepared": unified_diff(dest, old, new)}
    attrs_changed = False
    if content_changed and not module.check_mode:
        result.update(write_one(module, entry, new, old))
    elif old is not None:
        # Same content (or check mode): only the attributes may need a change.
        attrs_changed = module.set_fs_attributes_if_different(file_args(module, entry, dest), False)
    result["changed"] = content_changed or attrs_changed
    return result, diff


def check_restore(module: AnsibleModule, entries: list[dict]) -> None:
    """Fail, before any file is touched, on an option that only applies to a write, a bad dest
    or mode (check_entries), or a backup_file that is relative, missing, not a regular file, or
    the dest itself."""
    for option in ("backup", "backups_kept", "create_parents"):
        if module.params[option]:
            module.fail_json(msg=f"{option}={module.params[option]!r} does not apply to restore "
                                 "(it puts existing backups back); leave it unset")
    check_entries(module, entries, field="restore")
    for entry in entries:
        dest, backup = entry["dest"], entry.get("backup_file")
        if backup is None:
            continue
        problem = None
        if not os.path.isabs(backup):
            problem = "is not an absolute path"
        elif not os.path.lexists(backup):
            problem = "does not exist"
        elif not os.path.isfile(backup):
            problem = "is not a regular file"
        elif not os.access(backup, os.R_OK):
            problem = "cannot be read"
        elif os.path.exists(dest) and os.path.samefile(backup, dest):
            problem = "is the file itself"
        if problem:
            module.fail_json(msg=f"restore[].backup_file {backup!r} of {dest!r} {problem}: nothing was restored")


def restore_args(module: AnsibleModule, entry: dict, backup: os.stat_result, path: str) -> dict:
    """The attributes a restored file gets, applied to PATH: the entry's, else the module's, else
    the backup's own (a backup keeps the owner, group and mode of the file it was made from)."""
    args = file_args(module, entry, path)
    if args["owner"] is None:
        args["owner"] = str(backup.st_uid)
    if args["group"] is None:
        args["group"] = str(backup.st_gid)
    args["mode"] = mode_number(args["mode"], backup)
    return args


def mode_number(mode, base: os.stat_result) -> int:
    """MODE (octal or symbolic, or None for BASE's own) as a number; a symbolic mode counts from
    BASE's mode. A restore counts from the backup's, whether the content is written again or
    only the attributes change."""
    if mode is None:
        return stat.S_IMODE(base.st_mode)
    if isinstance(mode, int):
        return mode
    try:
        return int(mode, 8)
    except ValueError:
        return AnsibleModule._symbolic_mode_to_octal(base, mode)  # pylint: disable=protected-access


def restore_one(module: AnsibleModule, entry: dict) -> tuple[dict, dict | None]:
    """Put entry['backup_file'] back over entry['dest'] (content first compared, as a write does);
    its result and its diff (or None). An entry without backup_file is left alone."""
    dest, backup = entry["dest"], entry.get("backup_file")
    result = {"dest": dest, "restored": False, "changed": False, "content_changed": False}
    if backup is None:
        return result, None
    result["backup_file"] = backup
    new, old = _read(backup), _read(dest)
    if new is None:
        raise OSError(f"the backup {backup} is gone")
    backup_stat = os.stat(backup)
    content_changed = old != new
    diff = {"prepared": unified_diff(dest, old, new)} if content_changed and module._diff else None
    attrs_changed = False
    if content_changed and not module.check_mode:
        def prepare(tmp: str) -> None:
            module.set_fs_attributes_if_different(restore_args(module, entry, backup_stat, tmp), False)
        replace_atomically(dest, new, prepare)
    elif old is not None:
        attrs_changed = module.set_fs_attributes_if_different(restore_args(module, entry, backup_stat, dest), False)
    result.update(restored=True, content_changed=content_changed, changed=content_changed or attrs_changed)
    return result, diff


Apply = Callable[[AnsibleModule, dict], "tuple[dict, dict | None]"]


def run_entries(module: AnsibleModule, entries: list[dict], apply: Apply, verb: str) -> tuple[list[dict], list[dict]]:
    """APPLY each entry in turn; their results and diffs. An error fails the task naming the file
    and with the results so far (what already changed)."""
    results, diffs = [], []
    for entry in entries:
        try:
            result, diff = apply(module, entry)
        except (OSError, ValueError) as exc:
            module.fail_json(msg=f"could not {verb} {entry['dest']}: {to_native(exc)}",
                             files=results, changed=any(r["changed"] for r in results))
        results.append(result)
        if diff:
            diffs.append(diff)
    return results, diffs


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "options": {
                "dest": {"type": "path", "required": True},
                "content": {"type": "str", "required": True, "no_log": True},
                "owner": {"type": "str"},
                "group": {"type": "str"},
                "mode": {"type": "raw"},
            }},
            "restore": {"type": "list", "elements": "dict", "options": {
                "dest": {"type": "path", "required": True},
                "backup_file": {"type": "path"},
                "owner": {"type": "str"},
                "group": {"type": "str"},
                "mode": {"type": "raw"},
                # the rest of an earlier result's entry, accepted as it is
                "changed": {"type": "bool"},
                "content_changed": {"type": "bool"},
                "created": {"type": "bool"},
                "backups_removed": {"type": "list", "elements": "str"},
            }},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "mode": {"type": "raw"},
            "backup": {"type": "bool", "default": False},
            "backups_kept": {"type": "int", "default": 0},
            "create_parents": {"type": "bool", "default": False},
        },
        mutually_exclusive=[("files", "restore")],
        required_one_of=[("files", "restore")],
        supports_check_mode=True,
    )
    extra = {}
    if module.params["restore"] is not None:
        entries = module.params["restore"]
        check_restore(module, entries)
        results, diffs = run_entries(module, entries, restore_one, "restore")
        extra["no_backup"] = [entry["dest"] for entry in entries if entry.get("backup_file") is None]
    else:
        entries = module.params["files"]
        if module.params["backups_kept"] < 0:
            module.fail_json(msg="backups_kept=%d: expected 0 (keep every backup) or how many to keep per file"
                             % module.params["backups_kept"])
        check_entries(module, entries)
        results, diffs = run_entries(module, entries, apply_one, "write")
    changed = [r["dest"] for r in results if r["changed"]]
    module.exit_json(changed=bool(changed), files=results, changed_files=changed, diff=diffs, **extra)


if __name__ == "__main__":
    main()
