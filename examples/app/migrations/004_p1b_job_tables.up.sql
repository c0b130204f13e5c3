-- Seed 003, PR-P1B: the tables of the two jobs the example app runs (daily reward reminders and
-- badge auto-unlock), new tables only, and their demo data: 10000 users (the seed's figure, so
-- the legacy one-query-per-user path logs "Query count: 10001"), each with 0 to 9 daily claims.
CREATE TABLE IF NOT EXISTS app_users (
    id         bigint PRIMARY KEY,
    username   text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS daily_reward_claims (
    user_id    bigint NOT NULL,
    claimed_on date   NOT NULL,
    PRIMARY KEY (user_id, claimed_on)
);

CREATE TABLE IF NOT EXISTS reward_reminders (
    user_id    bigint      NOT NULL,
    remind_on  date        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, remind_on)
);

CREATE TABLE IF NOT EXISTS badges (
    id         text    PRIMARY KEY,
    name       text    NOT NULL,
    min_claims integer NOT NULL
);

CREATE TABLE IF NOT EXISTS user_badges (
    user_id     bigint      NOT NULL,
    badge_id    text        NOT NULL,
    unlocked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, badge_id)
);

INSERT INTO app_users (id, username)
SELECT g, 'user-' || g FROM generate_series(1, 10000) AS g
ON CONFLICT (id) DO NOTHING;

-- User g claimed on each of the last (g % 10) days, today excluded.
INSERT INTO daily_reward_claims (user_id, claimed_on)
SELECT u.g, current_date - d
  FROM generate_series(1, 10000) AS u (g)
  CROSS JOIN LATERAL generate_series(1, u.g % 10) AS d
ON CONFLICT (user_id, claimed_on) DO NOTHING;

INSERT INTO badges (id, name, min_claims)
VALUES ('first_claim', 'First reward', 1), ('regular', 'Regular', 5), ('week_streak', 'Week streak', 7)
ON CONFLICT (id) DO NOTHING;
