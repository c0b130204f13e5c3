-- Reverts 001: drops the base tables (and their data). feature_flags is left alone.
DROP TABLE IF EXISTS standings;
DROP TABLE IF EXISTS ai_predictions;
DROP TABLE IF EXISTS ts_fixtures;
DROP TABLE IF EXISTS ts_players;
