# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options added by gradual.rollout to community.postgresql's connection options."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  db:
    description:
      - Name of the database to connect to.
    type: str
    default: postgres
    aliases: [login_db]
  connect_timeout:
    description:
      - Seconds to wait for the connection before failing.
    type: int
    default: 10
requirements:
  - psycopg2
notes:
  - Connection options follow community.postgresql; see its C(postgres) doc fragment.
"""
