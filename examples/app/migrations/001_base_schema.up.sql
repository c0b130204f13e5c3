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
