-- 001 base schema of goalgpt-api (owned by the app; 002+ belong to the migration plan).
-- feature_flags is not created here: gradual.rollout.feature_flag creates and owns it.
CREATE TABLE IF NOT EXISTS ts_players (
    id          bigserial PRIMARY KEY,
    external_id text UNIQUE,
    team_id     text        NOT NULL,
    name        text        NOT NULL,
    position    text,
    shirt_no    integer,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE IF NOT EXISTS ts_fixtures (
    id           bigserial PRIMARY KEY,
    external_id  text UNIQUE,
    league_id    integer     NOT NULL,
    home_team_id text        NOT NULL,
    away_team_id text        NOT NULL,
    match_date   timestamptz NOT NULL,
    status       text        NOT NULL DEFAULT 'scheduled',
    home_score   integer,
    away_score   integer,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ai_predictions (
    id          bigserial PRIMARY KEY,
    external_id text        NOT NULL,
    match_id    bigint      NOT NULL,
    model       text        NOT NULL DEFAULT 'baseline',
    prediction  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    confidence  numeric(5, 4),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS standings (
    league_id     integer NOT NULL,
    team_id       text    NOT NULL,
    team_name     text    NOT NULL,
    position      integer NOT NULL,
    played        integer NOT NULL DEFAULT 0,
    won           integer NOT NULL DEFAULT 0,
    drawn         integer NOT NULL DEFAULT 0,
    lost          integer NOT NULL DEFAULT 0,
    goals_for     integer NOT NULL DEFAULT 0,
    goals_against integer NOT NULL DEFAULT 0,
    points        integer NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (league_id, team_id)
);

-- Demo data: league 39 (the seed's example) with 20 teams, so GET /api/standings/39 answers.
INSERT INTO standings (league_id, team_id, team_name, position, played, won, drawn, lost,
                       goals_for, goals_against, points)
SELECT 39, 'team-' || g, 'Team ' || g, g, 38,
       (20 - g) + 5, 8, 38 - ((20 - g) + 5) - 8,
       90 - 2 * g, 30 + g, 3 * ((20 - g) + 5) + 8
  FROM generate_series(1, 20) AS g
ON CONFLICT (league_id, team_id) DO NOTHING;

-- Lineups: 25 live players in each of 2000 teams (50000 rows), so the planner has a real choice
-- for the lineup query of 003's idx_ts_players_team_position (seed 003 verifies it with EXPLAIN).
INSERT INTO ts_players (external_id, team_id, name, position, shirt_no)
SELECT 'p-' || t || '-' || s, 'team-' || t, 'Player ' || t || '-' || s,
       (ARRAY['Goalkeeper', 'Defender', 'Midfielder', 'Forward'])[1 + s % 4], s
  FROM generate_series(1, 2000) AS t
  CROSS JOIN generate_series(1, 25) AS s
ON CONFLICT (external_id) DO NOTHING;

-- The tables of the app's two scheduled jobs (seed 003's daily reward reminders and badge
-- auto-unlock, which PR-P1B optimises) and their data: 10000 users (the seed's figure, so the
-- legacy one-query-per-user path logs "Query count: 10001"), each with 0 to 9 daily claims.
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
