"""The unit corpus of the migration linter: per rule, the unsafe SQL that must raise it and the safe
SQL that must not. Plain data, shared by tests/unit/plugins/module_utils/test_migration_lint.py (the
rules' verdicts) and tests/integration/test_migration_trace_agreement.py (the verdicts against
--trace on PostgreSQL), which loads it from this path."""

# rule -> (unsafe SQL that must raise it, safe SQL that must not)
CASES = {
    "create-index-non-concurrent": ("CREATE INDEX i ON t (a);", "CREATE INDEX CONCURRENTLY i ON t (a);"),
    "drop-index-non-concurrent": ("DROP INDEX i;", "DROP INDEX CONCURRENTLY IF EXISTS i;"),
    "reindex-non-concurrent": ("REINDEX INDEX i;", "REINDEX INDEX CONCURRENTLY i;"),
    "concurrently-in-transaction": ("BEGIN; CREATE INDEX CONCURRENTLY i ON t (a); COMMIT;",
                                    "BEGIN; SELECT 1; COMMIT; CREATE INDEX CONCURRENTLY i ON t (a);"),
    "foreign-key-not-valid": ("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES u (id);",
                              "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES u (id) NOT VALID;"),
    "check-not-valid": ("ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);",
                        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;"),
    "set-not-null": ("ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
                     "ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL) NOT VALID;"
                     "ALTER TABLE t VALIDATE CONSTRAINT t_a_nn;"
                     "ALTER TABLE t ALTER COLUMN a SET NOT NULL;"),
    "add-column-volatile-default": ("ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();",
                                    "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now();"),
    "add-column-stored-generated": ("ALTER TABLE t ADD COLUMN d int GENERATED ALWAYS AS (a * 2) STORED;",
                                    "ALTER TABLE t ADD COLUMN d int;"),
    "add-column-not-null-no-default": ("ALTER TABLE t ADD COLUMN s text NOT NULL;",
                                       "ALTER TABLE t ADD COLUMN s text NOT NULL DEFAULT 'new';"),
    "alter-column-type": ("ALTER TABLE t ALTER COLUMN a TYPE bigint;",
                          "ALTER TABLE t ADD COLUMN a varchar(20);\nALTER TABLE t ALTER COLUMN a TYPE varchar(64);"),
    "add-unique-without-index": ("ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a);",
                                 "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE USING INDEX t_a_key;"),
    "rename-column": ("ALTER TABLE t RENAME COLUMN a TO b;", "ALTER TABLE t ADD COLUMN b int;"),
    "rename-table": ("ALTER TABLE t RENAME TO t2;", "CREATE VIEW t2 AS SELECT * FROM t;"),
    "drop-column": ("ALTER TABLE t DROP COLUMN a;", "ALTER TABLE t ALTER COLUMN a DROP NOT NULL;"),
    "drop-table": ("DROP TABLE t;", "CREATE TABLE n (id int); DROP TABLE n;"),
    "vacuum-full": ("VACUUM FULL t;", "VACUUM (FULL false, ANALYZE) t;"),
    "cluster": ("CLUSTER t USING i;", "ANALYZE t;"),
    "lock-table": ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE;", "SELECT 1 FROM t LIMIT 1;"),
    "detach-partition-non-concurrent": ("ALTER TABLE p DETACH PARTITION p1;",
                                        "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;"),
    "attach-partition-scan": ("ALTER TABLE p ATTACH PARTITION p1 FOR VALUES IN (1);",
                              "CREATE TABLE p2 (LIKE p); ALTER TABLE p ATTACH PARTITION p2 FOR VALUES IN (2);"),
    "rewrite-table": ("ALTER TABLE t SET TABLESPACE fast;", "ALTER TABLE t SET (fillfactor = 90);"),
    "refresh-matview-non-concurrent": ("REFRESH MATERIALIZED VIEW mv;",
                                       "REFRESH MATERIALIZED VIEW CONCURRENTLY mv;"),
    "truncate": ("TRUNCATE t;", "CREATE TABLE scratch (id int); TRUNCATE scratch;"),
    "unbounded-update": ("UPDATE t SET a = 0;", "UPDATE t SET a = 0 WHERE id BETWEEN 1 AND 10000;"),
    # (the unsafe cases of a WHERE that every row matches are in test_backfill_of_a_new_column_*)
    "unbounded-delete": ("DELETE FROM t;", "DELETE FROM t WHERE created_at < now() - interval '1 year';"),
    "drop-database": ("DROP DATABASE app;", "CREATE DATABASE app_archive;"),
    "alter-domain-constraint": ("ALTER DOMAIN positive ADD CONSTRAINT gt0 CHECK (VALUE > 0);",
                                "ALTER DOMAIN positive ADD CONSTRAINT gt0 CHECK (VALUE > 0) NOT VALID;"),
    "rename-enum-value": ("ALTER TYPE status RENAME VALUE 'new' TO 'open';", "ALTER TYPE status ADD VALUE 'open';"),
    "rename-schema": ("ALTER SCHEMA shop RENAME TO store;", "CREATE SCHEMA store;"),
    "set-schema": ("ALTER TABLE orders SET SCHEMA archive;",
                   "CREATE TABLE scratch (id int); ALTER TABLE scratch SET SCHEMA archive;"),
    "rename-view": ("ALTER VIEW v RENAME TO v2;", "CREATE VIEW v2 AS SELECT * FROM v;"),
    "access-exclusive-held": ("ALTER TABLE orders ADD COLUMN c int;\nSELECT count(*) FROM orders;",
                              "SELECT count(*) FROM orders;\nALTER TABLE orders ADD COLUMN c int;"),
    "primary-key-nullable": ("ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_id;",
                             "ALTER TABLE orders ADD COLUMN k bigint NOT NULL DEFAULT 0;\n"
                             "CREATE UNIQUE INDEX CONCURRENTLY orders_k ON orders (k);\n"
                             "ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_k;"),
    "ignore-without-reason": ("-- gradual:ignore drop-column\nALTER TABLE t DROP COLUMN a;",
                              "-- gradual:ignore drop-column app 41 stopped reading t.a\n"
                              "ALTER TABLE t DROP COLUMN a;"),
}
