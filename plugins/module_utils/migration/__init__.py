# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration engine of gradual.rollout: ``lint`` (static analysis with PostgreSQL's parser),
``plan`` (files to an execution plan), ``runner`` (the plan against PostgreSQL) and ``options``
(the options of ``pg_migrate`` that the engine reads). Used by the modules ``pg_migrate`` and
``pg_migration_lint``, the rollout plan and ``bin/pg-migration-lint``; none of it imports Ansible.
"""
