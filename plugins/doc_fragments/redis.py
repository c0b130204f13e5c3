# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis connection options (plugins/module_utils/redis_conn.py)."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  redis_host:
    description:
      - Redis server host name or address.
    type: str
    default: localhost
  redis_port:
    description:
      - Redis server TCP port.
    type: int
    default: 6379
  redis_db:
    description:
      - Redis logical database number.
    type: int
    default: 0
  redis_username:
    description:
      - ACL user name (Redis 6+). Omit to authenticate as the C(default) user.
    type: str
  redis_password:
    description:
      - Password of O(redis_username) (or of the C(default) user).
    type: str
  redis_tls:
    description:
      - Connect with TLS.
    type: bool
    default: false
  redis_ca_cert:
    description:
      - CA bundle to verify the server certificate with, when O(redis_tls=true).
    type: path
  redis_client_cert:
    description:
      - Client certificate for mutual TLS.
    type: path
  redis_client_key:
    description:
      - Private key of O(redis_client_cert).
    type: path
  redis_validate_certs:
    description:
      - Verify the server certificate and host name when O(redis_tls=true).
    type: bool
    default: true
  redis_timeout:
    description:
      - Seconds to wait for the connection and for each command.
    type: float
    default: 5.0
requirements:
  - redis (redis-py)
notes:
  - The options are prefixed C(redis_) so they never collide with the PostgreSQL connection options.
"""
