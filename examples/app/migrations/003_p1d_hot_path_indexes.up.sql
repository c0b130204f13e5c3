-- Seed 003, week 3 day 15: PR-P1D hot path indexes. Verify with
--   EXPLAIN SELECT * FROM ts_players WHERE team_id = '12345' AND position = 'Midfielder'
--     AND deleted_at IS NULL;   -> Index Scan using idx_ts_players_team_position
-- Lineup query: live players of a team by position (soft-deleted rows are never read).
CREATE INDEX CONCURRENTLY idx_ts_players_team_position
    ON ts_players (team_id, position)
    WHERE deleted_at IS NULL;

-- Fixture lists of a league by date.
CREATE INDEX CONCURRENTLY idx_ts_fixtures_league_date ON ts_fixtures (league_id, match_date DESC);

-- Standings table of a league in table order.
CREATE INDEX CONCURRENTLY idx_standings_league_position ON standings (league_id, position);
