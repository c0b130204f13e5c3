-- Reverts 004: drops the job tables (and their data).
DROP TABLE IF EXISTS user_badges;
DROP TABLE IF EXISTS badges;
DROP TABLE IF EXISTS reward_reminders;
DROP TABLE IF EXISTS daily_reward_claims;
DROP TABLE IF EXISTS app_users;
