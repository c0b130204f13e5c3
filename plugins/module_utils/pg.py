# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connection shared by the collection's modules.

The connection options and their documentation come from community.postgresql (its
``postgres_common_argument_spec`` and ``community.postgresql.postgres`` doc fragment), so an operator
passes the same ``login_*`` / ``ssl_*`` options as to any community.postgresql module. This module
adds ``db`` and connects with psycopg2 only, so the callers handle a single driver.
"""
from __future__ import annotations

import traceback

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    get_conn_params,
    postgres_common_argument_spec,
)

try:
    import psycopg2
    import psycopg2.extensions
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()


def pg_argument_spec() -> dict:
    """Connection options: community.postgresql's common ones plus ``db``."""
    spec = postgres_common_argument_spec()
    spec["db"] = dict(type="str", default="postgres", aliases=["login_db"])
    spec["connect_timeout"] = dict(type="int", default=10)
    return spec


def conn_params(module) -> dict:
    """libpq keyword parameters built from the module's options."""
    params = get_conn_params(module, module.params, warn_db_default=False)
    params.setdefault("connect_timeout", module.params.get("connect_timeout") or 10)
    params.setdefault("application_name", "gradual.rollout/" + module._name.split(".")[-1])
    return params


def describe_target(params: dict) -> str:
    """``user@host:port/db`` for messages; never the password."""
    return "%s@%s:%s/%s" % (params.get("user", "?"), params.get("host", "local socket"),
                            params.get("port", 5432), params.get("dbname", "?"))


def pg_connect(module, autocommit: bool = False, params: dict | None = None):
    """Open a psycopg2 connection or fail the module with a message naming the target."""
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    params = params or conn_params(module)
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.Error as exc:
        module.fail_json(msg="cannot connect to PostgreSQL at %s: %s"
                         % (describe_target(params), to_native(exc).strip()))
    conn.autocommit = autocommit
    return conn
