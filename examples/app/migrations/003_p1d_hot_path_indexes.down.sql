-- Reverts 003: drops the hot path indexes without blocking writes.
DROP INDEX CONCURRENTLY IF EXISTS idx_standings_league_position;

DROP INDEX CONCURRENTLY IF EXISTS idx_ts_fixtures_league_date;

DROP INDEX CONCURRENTLY IF EXISTS idx_ts_players_team_position;
