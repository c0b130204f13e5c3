# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis connection shared by feature_flag and cache_check (redis-py).

Options are prefixed ``redis_`` so that a module can take them next to the PostgreSQL connection
options (whose deprecated aliases ``host`` and ``port`` would otherwise collide). They are
documented once in the ``gradual.rollout.redis`` doc fragment.
"""
from __future__ import annotations

import traceback

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.common.text.converters import to_native

try:
    import redis
    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None
except ImportError:
    redis = None
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()


def redis_argument_spec() -> dict:
    """The ``redis_*`` connection options."""
    return dict(
        redis_host=dict(type="str", default="localhost"),
        redis_port=dict(type="int", default=6379),
        redis_db=dict(type="int", default=0),
        redis_username=dict(type="str"),
        redis_password=dict(type="str", no_log=True),
        redis_tls=dict(type="bool", default=False),
        redis_ca_cert=dict(type="path"),
        redis_client_cert=dict(type="path"),
        redis_client_key=dict(type="path", no_log=False),
        redis_validate_certs=dict(type="bool", default=True),
        redis_timeout=dict(type="float", default=5.0),
    )


def describe_redis(params: dict) -> str:
    """``user@host:port/db`` for messages; never the password."""
    user = params.get("redis_username") or "default"
    tls = " (tls)" if params.get("redis_tls") else ""
    return "%s@%s:%s/%s%s" % (user, params.get("redis_host"), params.get("redis_port"),
                              params.get("redis_db"), tls)


def redis_connect(module, client_name: str | None = None):
    """A connected redis.Redis (decoded responses) or fail_json naming the server and the fix."""
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)
    p = module.params
    kwargs = dict(host=p["redis_host"], port=p["redis_port"], db=p["redis_db"],
                  username=p["redis_username"], password=p["redis_password"],
                  socket_timeout=p["redis_timeout"], socket_connect_timeout=p["redis_timeout"],
                  decode_responses=True,
                  client_name=client_name or "gradual.rollout/" + module._name.split(".")[-1])
    if p["redis_tls"]:
        kwargs.update(ssl=True, ssl_ca_certs=p["redis_ca_cert"], ssl_certfile=p["redis_client_cert"],
                      ssl_keyfile=p["redis_client_key"],
                      ssl_cert_reqs="required" if p["redis_validate_certs"] else "none",
                      ssl_check_hostname=bool(p["redis_validate_certs"]))
    client = redis.Redis(**kwargs)
    try:
        client.ping()
    except redis.exceptions.AuthenticationError as exc:
        module.fail_json(msg="Redis at %s refused the credentials: %s; check redis_username / "
                         "redis_password" % (describe_redis(p), to_native(exc)))
    except redis.exceptions.ResponseError as exc:
        module.fail_json(msg="Redis at %s rejected the connection: %s; check redis_username / "
                         "redis_password and the user's ACL" % (describe_redis(p), to_native(exc)))
    except redis.exceptions.RedisError as exc:
        module.fail_json(msg="cannot connect to Redis at %s: %s; check redis_host / redis_port / "
                         "redis_tls" % (describe_redis(p), to_native(exc)))
    return client
