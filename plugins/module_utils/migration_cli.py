# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg-migration-lint [--format text|json] PATH...: the CI validator for PostgreSQL migrations.

Run through bin/pg-migration-lint. Exit status: 0 clean (warnings allowed), 1 when an active
finding has severity error, 2 for usage errors, missing files or SQL that does not parse.
migration_lint.py is loaded from beside this file, so the CLI needs neither Ansible nor an installed
collection, only pglast.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

LINT_PATH = os.path.join(os.path.dirname(os.path.realpath(__file__)), "migration_lint.py")


def load_lint():
    spec = importlib.util.spec_from_file_location("gradual_migration_lint", LINT_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="pg-migration-lint",
                                     description="Find PostgreSQL migration statements that lock or "
                                     "break production. Silence one with "
                                     "'-- gradual:ignore <rule-id> <reason>'.")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--show-ignored", action="store_true",
                        help="also print findings silenced by gradual:ignore (text format)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="SQL file or directory")
    return parser.parse_args(argv)


def render_text(findings, ignored, files, show_ignored):
    out = []
    for f in findings:
        out.append("%s:%d: %s [%s] %s\n    %s\n    fix: %s"
                   % (f.file, f.line, f.severity, f.rule, f.message, f.statement, f.suggestion))
    if show_ignored:
        for f in ignored:
            out.append("%s:%d: ignored [%s] %s" % (f.file, f.line, f.rule, f.ignored))
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    if errors:
        out.append("%d error(s), %d warning(s) in %d file(s)" % (errors, warnings, len(files)))
    else:
        out.append("All migrations are safe: %d file(s), 0 errors, %d warning(s), %d ignored"
                   % (len(files), warnings, len(ignored)))
    return "\n".join(out)


def main(argv=None) -> int:
    """The CLI; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    lint = load_lint()
    if not lint.HAS_PGLAST:
        _err("pg-migration-lint: pglast is not installed (pip install pglast)")
        return 2
    try:
        files = lint.migration_files(args.paths)
    except FileNotFoundError as exc:
        _err("pg-migration-lint: %s" % exc)
        return 2
    findings = []
    for path in files:
        try:
            findings.extend(lint.lint_file(path))
        except lint.MigrationParseError as exc:
            _err("pg-migration-lint: parse error: %s:%d: %s" % (exc.filename, exc.line, exc.message))
            return 2
        except (OSError, UnicodeDecodeError) as exc:
            _err("pg-migration-lint: cannot read %s: %s" % (path, exc))
            return 2
    active = lint.active(findings)
    ignored = [f for f in findings if f.ignored is not None]
    if args.format == "json":
        _out(json.dumps([f.to_dict() for f in active], indent=2))
    else:
        _out(render_text(active, ignored, files, args.show_ignored))
    return 1 if any(f.severity == "error" for f in active) else 0
