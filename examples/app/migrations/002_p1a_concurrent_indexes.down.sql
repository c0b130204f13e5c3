-- Reverts 002: drops its indexes without blocking writes.
DROP INDEX CONCURRENTLY IF EXISTS idx_fixtures_away_team;

DROP INDEX CONCURRENTLY IF EXISTS idx_fixtures_home_team;

DROP INDEX CONCURRENTLY IF EXISTS idx_fixtures_status_match_date;

DROP INDEX CONCURRENTLY IF EXISTS idx_ai_predictions_created_at;

DROP INDEX CONCURRENTLY IF EXISTS idx_ai_predictions_match_id;

DROP INDEX CONCURRENTLY IF EXISTS idx_ai_predictions_external_id;
