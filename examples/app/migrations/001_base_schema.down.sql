-- Reverts 001: drops the base and job tables (and their data). feature_flags is left alone.
DROP TABLE IF EXISTS user_badges;
DROP TABLE IF EXISTS badges;
DROP TABLE IF EXISTS reward_reminders;
DROP TABLE IF EXISTS daily_reward_claims;
DROP TABLE IF EXISTS app_users;
DROP TABLE IF EXISTS standings;
DROP TABLE IF EXISTS ai_predictions;
DROP TABLE IF EXISTS ts_fixtures;
DROP TABLE IF EXISTS ts_players;
