-- Seed 003, week 1 day 1: PR-P1A "Migration Safety" - the indexes the API's lookups need, built
-- without blocking writes. pg_migrate runs each CONCURRENTLY statement on its own (outside a
-- transaction, statement_timeout = 0) and rebuilds an index a failed build left INVALID.
CREATE INDEX CONCURRENTLY idx_ai_predictions_external_id ON ai_predictions (external_id);

CREATE INDEX CONCURRENTLY idx_ai_predictions_match_id ON ai_predictions (match_id);

CREATE INDEX CONCURRENTLY idx_ai_predictions_created_at ON ai_predictions (created_at DESC);

CREATE INDEX CONCURRENTLY idx_fixtures_status_match_date ON ts_fixtures (status, match_date);

CREATE INDEX CONCURRENTLY idx_fixtures_home_team ON ts_fixtures (home_team_id);

CREATE INDEX CONCURRENTLY idx_fixtures_away_team ON ts_fixtures (away_team_id);
