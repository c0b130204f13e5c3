'use strict';
// goalgpt-api: the small service the gradual.rollout lab deploys.
//
// Endpoints
//   GET /health              200 when PostgreSQL answers, else 503. Redis is reported (checks.redis,
//                            status "degraded") but never fails it: every request falls back to
//                            PostgreSQL when the cache is away, so a cache outage is not an outage
//   GET /health/pool         {active, idle, waiting, total, max, utilization} of the pg pool
//   GET /api/standings/:id   standings of a league from PostgreSQL, Redis-cached when
//                            USE_REDIS_CACHE and CACHE_STANDINGS are true; reply has `fromCache`
//   GET /api/flags           effective flags and limits, and where each value came from
//   GET /metrics             Prometheus exposition (prom-client): request duration per route pattern
//                            and status, the pg pool read at scrape time, cache hits and misses, and
//                            the database queries per request and their duration (the query count
//                            seed 003 reads from logs), the jobs' queries and duration, plus
//                            prom-client's process metrics. Under PM2 cluster mode each scrape is
//                            answered by one worker: its own figures
//   POST /api/jobs/:name     runs a job now and answers its result: daily-rewards or badge-unlock
//                            (seed 003's "Daily Reward Reminders" and "Badge Auto Unlock"). Loopback
//                            callers only unless JOBS_HTTP_REMOTE=true; 409 while that job runs
//
// Jobs (see "jobs" below): USE_OPTIMIZED_DAILY_REWARDS / USE_OPTIMIZED_BADGE_UNLOCK off take the
// legacy path (one query per user, N+1), on the optimised one (2 queries / 1 + one per badge). Each
// run logs, as the seed prints them, "[Daily Reward Reminders] Query count: 2 (10000 users)" and
// "[Daily Reward Reminders] Completed in 35ms", counted by db(). JOB_DAILY_REWARDS_INTERVAL_MS and
// JOB_BADGE_UNLOCK_INTERVAL_MS (0, the default: off) run them on a timer, in PM2's first worker only.
// JOB_FAULT_FILE (lab only, unset by default) names a file read at every job run: a line
// `<job|*> legacy` forces the legacy path (10000 users: "Query count: 10001"), `<job|*> error`
// makes the run fail (a line in error.log), `http delay <ms>` makes every request wait that long
// before it is handled (a slow canary; re-read at most once a second).
//
// Errors: with APP_ERROR_LOG set (the app role: <app_log_dir>/error.log), job failures, requests
// answered 500 and uncaught exceptions are appended there, one line each:
//   2026-12-07T20:15:00.123Z ERROR goalgpt-api[1234] [Daily Reward Reminders] Job failed: <message>
// (ISO time, then ERROR as the second field). With SENTRY_DSN set, errors of a request (answered
// 500) and uncaught exceptions are sent to Sentry (@sentry/core with a node:http transport, see
// initSentry); unset, the SDK is not even loaded and nothing is sent.
//
// Flags and limits come from the environment (app.env + flags.env, loaded by PM2's ecosystem file
// or systemd's EnvironmentFile=) and from the `feature_flags` table (name text, value jsonb) when
// it exists. Precedence: FLAG_PRECEDENCE=env (default) makes the environment win and the table only
// fill flags the environment does not set: flags.env is what a rollout edits and what a rollback
// restores, so a stale row can never keep a flag on after a rollback. FLAG_PRECEDENCE=table lets a
// row override the environment, so a flag flipped in the table applies within FLAG_REFRESH_MS
// without a reload.
//
// Zero-drop reloads: `ready` is sent to PM2 (wait_ready) only once the server listens; on SIGINT,
// SIGTERM or PM2's `shutdown` message the server stops accepting, answers in-flight requests with
// `Connection: close`, then closes the pools and exits (bounded by SHUTDOWN_TIMEOUT_MS).

const fs = require('fs');
const http = require('http');
const path = require('path');
const { AsyncLocalStorage } = require('async_hooks');
const { Pool } = require('pg');
const { createClient } = require('redis');
const promClient = require('prom-client');

const env = process.env;
const intEnv = (name, dflt) => {
  const n = Number.parseInt(env[name] ?? '', 10);
  return Number.isFinite(n) ? n : dflt;
};

const PORT = intEnv('PORT', 3000);
const HOST = env.HOST || '0.0.0.0';
const APP_NAME = env.APP_NAME || 'goalgpt-api';
const KEY_PREFIX = env.REDIS_KEY_PREFIX || 'goalgpt';
const STANDINGS_TTL = intEnv('CACHE_STANDINGS_TTL_SECONDS', 300);
const FLAG_REFRESH_MS = intEnv('FLAG_REFRESH_MS', 5000);
const FLAG_PRECEDENCE = (env.FLAG_PRECEDENCE || 'env').toLowerCase();
const FLAGS_TABLE = env.FEATURE_FLAGS_TABLE || 'feature_flags';
const SHUTDOWN_TIMEOUT_MS = intEnv('SHUTDOWN_TIMEOUT_MS', 8000);
const POOL_MAX = intEnv('DB_POOL_MAX', 10);
const STATEMENT_TIMEOUT_MS = intEnv('DB_STATEMENT_TIMEOUT_MS', 5000);

// The release this process runs: the app role writes RELEASE into each release directory.
let VERSION = 'dev';
try {
  VERSION = fs.readFileSync(path.join(__dirname, 'RELEASE'), 'utf8').trim() || VERSION;
} catch (e) { /* not deployed by the role */ }

const log = (level, msg, extra = {}) =>
  console.log(JSON.stringify({ ts: new Date().toISOString(), level, pid: process.pid, version: VERSION, msg, ...extra }));

// Error reporting with @sentry/core, the official SDK's platform-neutral core (2 packages, no
// OpenTelemetry, no module loader hooks; @sentry/node adds about 20 packages and 60+ MB for tracing
// this app does not use). What the Node SDK would add and this app needs is here: a client that
// turns errors into events, a V8 stack line parser and a transport on node:http/https.
// Called only when SENTRY_DSN is set; throws on a malformed DSN (the caller logs that, never the DSN).
function initSentry({ dsn, release, environment }) {
  const Sentry = require('@sentry/core'); // eslint-disable-line global-require
  const https = require('https'); // eslint-disable-line global-require
  // "    at fn (/srv/app/current/server.js:10:5)" or "    at /srv/app/current/server.js:10:5"
  const V8_FRAME = /^\s*at (?:(.+?) \()?(.+?):(\d+):(\d+)\)?\s*$/;
  const nodeLineParser = [90, (line) => {
    const m = V8_FRAME.exec(line);
    if (!m) return undefined;
    const filename = m[2].startsWith('file://') ? m[2].slice(7) : m[2];
    return {
      function: m[1] || '?',
      filename,
      lineno: Number(m[3]),
      colno: Number(m[4]),
      in_app: !filename.startsWith('node:') && !filename.includes('/node_modules/'),
    };
  }];
  const stackParser = Sentry.createStackParser(nodeLineParser);

  class AppClient extends Sentry.Client {
    eventFromException(exception, hint) {
      return Sentry.resolvedSyncPromise(Sentry.eventFromUnknownInput(this, stackParser, exception, hint));
    }

    eventFromMessage(message, level = 'info', hint) {
      return Sentry.resolvedSyncPromise(
        Sentry.eventFromMessage(stackParser, message, level, hint, this.getOptions().attachStacktrace));
    }
  }

  // POST each envelope to the DSN's ingest URL; the rate-limit headers go back to the core.
  function makeNodeTransport(options) {
    return Sentry.createTransport(options, (request) => new Promise((resolve, reject) => {
      const url = new URL(options.url);
      const client = url.protocol === 'https:' ? https : http;
      const req = client.request(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-sentry-envelope', ...(options.headers || {}) },
        timeout: 5000,
      }, (res) => {
        res.resume();
        res.on('end', () => resolve({
          statusCode: res.statusCode,
          headers: {
            'retry-after': res.headers['retry-after'] ?? null,
            'x-sentry-rate-limits': res.headers['x-sentry-rate-limits'] ?? null,
          },
        }));
      });
      req.on('timeout', () => req.destroy(new Error('Sentry request timed out')));
      req.on('error', reject);
      req.end(request.body);
    }));
  }

  if (!Sentry.makeDsn(dsn)) throw new Error('not a DSN (https://<key>@<host>/<project>)');
  Sentry.initAndBind(AppClient, {
    dsn,
    release,
    environment,
    transport: makeNodeTransport,
    stackParser,
    integrations: [Sentry.dedupeIntegration(), Sentry.linkedErrorsIntegration(), Sentry.functionToStringIntegration()],
    sendDefaultPii: false,
  });
  return {
    capture: (err, context = {}) => Sentry.withScope((scope) => {
      scope.setTags(context);
      Sentry.captureException(err);
    }),
    flush: (ms) => Sentry.flush(ms),
  };
}

// ---- errors -----------------------------------------------------------------------------------
// Loaded only when SENTRY_DSN is set: unset, the app neither loads the SDK nor sends anything.
let sentry = null;
if (env.SENTRY_DSN) {
  try {
    sentry = initSentry({ dsn: env.SENTRY_DSN, release: VERSION, environment: env.SENTRY_ENVIRONMENT || env.NODE_ENV || 'production' });
    log('info', 'error reporting to Sentry enabled');
  } catch (err) {
    log('warn', 'error reporting disabled: SENTRY_DSN refused', { error: err.message }); // never the DSN itself
  }
}
const reportError = (err, context) => { if (sentry) sentry.capture(err, context); };

// error.log: one line per error, appended (O_APPEND: whole lines even from PM2's cluster workers).
const ERROR_LOG = env.APP_ERROR_LOG || '';
function errorLog(text) {
  if (!ERROR_LOG) return;
  const line = `${new Date().toISOString()} ERROR ${APP_NAME}[${process.pid}] ${String(text).replace(/\s*\n\s*/g, ' ')}\n`;
  try {
    fs.appendFileSync(ERROR_LOG, line);
  } catch (err) {
    log('warn', 'cannot write the error log', { path: ERROR_LOG, error: err.message });
  }
}

// ---- metrics ----------------------------------------------------------------------------------
// Bounded label values only: the route is the matched pattern (/api/standings/:id, never the raw
// URL), unknown paths are `unmatched`. Buckets include 3 s, the seeds' response-time threshold.
const metrics = new promClient.Registry();
promClient.collectDefaultMetrics({ register: metrics });
const httpDuration = new promClient.Histogram({
  name: 'http_request_duration_seconds',
  help: 'HTTP request duration by route pattern and status code',
  labelNames: ['route', 'status_code'],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10],
  registers: [metrics],
});
const cacheHits = new promClient.Counter({
  name: 'app_cache_hits_total', help: 'Redis cache reads that found the key', labelNames: ['cache'], registers: [metrics],
});
const cacheMisses = new promClient.Counter({
  name: 'app_cache_misses_total', help: 'Redis cache reads that did not (absent key or failed read)', labelNames: ['cache'], registers: [metrics],
});
const queriesPerRequest = new promClient.Histogram({
  name: 'app_db_queries_per_request',
  help: 'Database queries issued while serving one request, by route pattern',
  labelNames: ['route'],
  buckets: [0, 1, 2, 3, 5, 10, 20, 50, 100],
  registers: [metrics],
});
const queryDuration = new promClient.Histogram({
  name: 'app_db_query_duration_seconds',
  help: 'Database query duration by route pattern (flag_refresh: the periodic feature_flags read)',
  labelNames: ['route'],
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [metrics],
});
// Jobs: runs by outcome, queries and duration of each run, and the last run's query count (what a
// Prometheus gate compares with the seed's thresholds: <= 3 daily rewards, <= 10 badge unlock).
const jobRuns = new promClient.Counter({
  name: 'app_job_runs_total', help: 'Job runs by job, path (legacy or optimized) and status (ok or error)',
  labelNames: ['job', 'path', 'status'], registers: [metrics],
});
const queriesPerJob = new promClient.Histogram({
  name: 'app_db_queries_per_job',
  help: 'Database queries issued by one run of a job, by job and path',
  labelNames: ['job', 'path'],
  buckets: [1, 2, 3, 5, 10, 20, 50, 100, 1000, 10000, 100000],
  registers: [metrics],
});
const jobDuration = new promClient.Histogram({
  name: 'app_job_duration_seconds',
  help: 'Duration of a job run, by job and path',
  labelNames: ['job', 'path'],
  buckets: [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
  registers: [metrics],
});
const jobLastQueries = new promClient.Gauge({
  name: 'app_job_last_run_queries', help: 'Database queries of the last run of a job (this process)',
  labelNames: ['job'], registers: [metrics],
});
// Per-request context (route pattern and query count) that db() reads without threading it through.
const requestContext = new AsyncLocalStorage();

// ---- flags ------------------------------------------------------------------------------------
const FLAG_DEFS = {
  USE_OPTIMIZED_DAILY_REWARDS: { type: 'bool', dflt: false },
  USE_OPTIMIZED_BADGE_UNLOCK: { type: 'bool', dflt: false },
  USE_OPTIMIZED_SCHEDULED_NOTIFICATIONS: { type: 'bool', dflt: false },
  USE_REDIS_CACHE: { type: 'bool', dflt: false },
  CACHE_STANDINGS: { type: 'bool', dflt: false },
  CACHE_H2H: { type: 'bool', dflt: false },
  CACHE_MATCH_DETAILS: { type: 'bool', dflt: false },
  MATCH_ENRICHER_CONCURRENCY: { type: 'int', dflt: 999 },
  MATCH_WATCHDOG_CONCURRENCY: { type: 'int', dflt: 999 },
  BADGE_AUTO_UNLOCK_BATCH_SIZE: { type: 'int', dflt: 100 },
};

function coerce(def, raw) {
  if (raw === undefined || raw === null || raw === '') return undefined;
  if (def.type === 'bool') {
    if (typeof raw === 'boolean') return raw;
    const s = String(raw).trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(s)) return true;
    if (['false', '0', 'no', 'off'].includes(s)) return false;
    return undefined;
  }
  const n = typeof raw === 'number' ? raw : Number.parseInt(String(raw), 10);
  return Number.isFinite(n) ? n : undefined;
}

let tableFlags = {};
let flagsTableState = 'unknown';

function effectiveFlags() {
  const out = {};
  for (const [name, def] of Object.entries(FLAG_DEFS)) {
    const fromEnv = coerce(def, env[name]);
    const fromTable = coerce(def, tableFlags[name]);
    let value; let source;
    const order = FLAG_PRECEDENCE === 'table' ? [[fromTable, 'table'], [fromEnv, 'env']] : [[fromEnv, 'env'], [fromTable, 'table']];
    for (const [v, s] of order) {
      if (v !== undefined) { value = v; source = s; break; }
    }
    if (value === undefined) { value = def.dflt; source = 'default'; }
    out[name] = { value, source };
  }
  return out;
}
const flag = (name) => effectiveFlags()[name].value;

// ---- connections ------------------------------------------------------------------------------
// pg reads PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD from the environment. Unnamed statements
// only, so PgBouncer in transaction mode is fine.
const pool = new Pool({
  max: POOL_MAX,
  idleTimeoutMillis: intEnv('DB_POOL_IDLE_TIMEOUT_MS', 30000),
  connectionTimeoutMillis: intEnv('DB_CONNECT_TIMEOUT_MS', 3000),
  // A startup parameter: PgBouncer refuses it (unless listed in its ignore_startup_parameters).
  // DB_STATEMENT_TIMEOUT_MS=0 sends none; behind PgBouncer set it on the role instead
  // (ALTER ROLE ... SET statement_timeout).
  ...(STATEMENT_TIMEOUT_MS > 0 ? { statement_timeout: STATEMENT_TIMEOUT_MS } : {}),
  application_name: APP_NAME,
});
pool.on('error', (err) => log('warn', 'idle pg client error', { error: err.message }));

// The pool's figures, read at scrape time (names as gradual.rollout.monitoring's rules expect them).
for (const [name, help, read] of [
  ['pg_pool_total', 'Connections the pg pool holds (idle and in use)', () => pool.totalCount],
  ['pg_pool_idle', 'Idle connections of the pg pool', () => pool.idleCount],
  ['pg_pool_waiting', 'Queries waiting for a pg pool connection', () => pool.waitingCount],
  ['pg_pool_max', 'Maximum size of the pg pool (DB_POOL_MAX)', () => POOL_MAX],
]) {
  // eslint-disable-next-line no-new
  new promClient.Gauge({ name, help, registers: [metrics], collect() { this.set(read()); } });
}

// Every query of the app goes through db(): counted for the current request and timed.
async function db(text, params) {
  const ctx = requestContext.getStore();
  if (ctx) ctx.queries += 1;
  const end = queryDuration.startTimer({ route: ctx ? ctx.route : 'none' });
  try {
    return await pool.query(text, params);
  } finally {
    end();
  }
}

let redis = null;
if (env.REDIS_HOST || env.REDIS_URL) {
  const opts = {
    socket: {
      host: env.REDIS_HOST || undefined,
      port: intEnv('REDIS_PORT', 6379),
      connectTimeout: 2000,
      reconnectStrategy: (retries) => Math.min(100 * (retries + 1), 2000),
    },
    disableOfflineQueue: true, // fail fast when Redis is away: the cache is optional, requests are not
  };
  if (env.REDIS_URL) opts.url = env.REDIS_URL;
  if (env.REDIS_USERNAME) opts.username = env.REDIS_USERNAME;
  if (env.REDIS_PASSWORD) opts.password = env.REDIS_PASSWORD;
  if (env.REDIS_DB) opts.database = intEnv('REDIS_DB', 0);
  redis = createClient(opts);
  redis.on('error', (err) => log('warn', 'redis error', { error: err.message }));
  redis.connect().catch((err) => log('warn', 'redis connect failed', { error: err.message }));
}

async function refreshTableFlags() {
  if (!/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/.test(FLAGS_TABLE)) {
    flagsTableState = 'invalid table name';
    return;
  }
  try {
    const res = await requestContext.run({ route: 'flag_refresh', queries: 0 }, () => db(`SELECT name, value FROM ${FLAGS_TABLE}`));
    const next = {};
    for (const row of res.rows) next[row.name] = row.value;
    tableFlags = next;
    flagsTableState = 'present';
  } catch (err) {
    if (err.code === '42P01') { tableFlags = {}; flagsTableState = 'absent'; } else { flagsTableState = `error: ${err.message}`; }
  }
}

const withTimeout = (promise, ms, what) => Promise.race([
  promise,
  new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms).unref()),
]);

// ---- handlers ---------------------------------------------------------------------------------
function send(res, status, body) {
  const data = JSON.stringify(body);
  const headers = { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(data), 'Cache-Control': 'no-store' };
  if (shuttingDown) headers.Connection = 'close';
  res.writeHead(status, headers);
  res.end(data);
}

async function health(req, res) {
  const checks = {};
  let ok = true;
  let cacheOk = true;
  try {
    await withTimeout(db('SELECT 1'), 2000, 'database');
    checks.db = 'ok';
  } catch (err) { ok = false; checks.db = err.message; }
  if (redis) {
    try {
      await withTimeout(redis.ping(), 2000, 'redis');
      checks.redis = 'ok';
    } catch (err) { cacheOk = false; checks.redis = err.message; }
  } else {
    checks.redis = 'not configured';
  }
  const status = !ok ? 'down' : (cacheOk ? 'ok' : 'degraded');
  send(res, ok ? 200 : 503, { status, app: APP_NAME, version: VERSION, pid: process.pid, uptime: Math.round(process.uptime()), checks });
}

function poolStats(req, res) {
  const total = pool.totalCount;
  const idle = pool.idleCount;
  const active = total - idle;
  send(res, 200, {
    active, idle, waiting: pool.waitingCount, total, max: POOL_MAX,
    utilization: Math.round((active / POOL_MAX) * 1000) / 10, // percent of the pool's maximum
  });
}

async function standings(req, res, id) {
  const leagueId = Number.parseInt(id, 10);
  if (!/^\d+$/.test(id) || !Number.isSafeInteger(leagueId)) {
    send(res, 400, { error: `league id must be a positive integer, got ${JSON.stringify(id)}` });
    return;
  }
  const useCache = flag('USE_REDIS_CACHE') && flag('CACHE_STANDINGS') && redis !== null;
  const key = `${KEY_PREFIX}:standings:${leagueId}:overall`;
  if (useCache) {
    try {
      const hit = await redis.get(key);
      if (hit) {
        cacheHits.inc({ cache: 'standings' });
        send(res, 200, { ...JSON.parse(hit), fromCache: true });
        return;
      }
      cacheMisses.inc({ cache: 'standings' });
    } catch (err) {
      cacheMisses.inc({ cache: 'standings' });
      log('warn', 'cache read failed', { key, error: err.message });
    }
  }
  const result = await db(
    `SELECT team_id, team_name, position, played, won, drawn, lost, goals_for, goals_against, points
       FROM standings WHERE league_id = $1 ORDER BY position`, [leagueId]);
  if (result.rowCount === 0) {
    send(res, 404, { error: `no standings for league ${leagueId}`, fromCache: false });
    return;
  }
  const body = { leagueId, type: 'overall', standings: result.rows, generatedAt: new Date().toISOString() };
  if (useCache) {
    redis.set(key, JSON.stringify(body), { EX: STANDINGS_TTL })
      .catch((err) => log('warn', 'cache write failed', { key, error: err.message }));
  }
  send(res, 200, { ...body, fromCache: false });
}

function flags(req, res) {
  send(res, 200, { precedence: FLAG_PRECEDENCE, table: flagsTableState, flags: effectiveFlags() });
}

async function metricsHandler(req, res) {
  const data = await metrics.metrics();
  res.writeHead(200, { 'Content-Type': metrics.contentType, 'Cache-Control': 'no-store', ...(shuttingDown ? { Connection: 'close' } : {}) });
  res.end(data);
}

// ---- jobs -------------------------------------------------------------------------------------
// Seed 003's two jobs on their tables (migration 001). Every query goes through db() inside a
// context of its own, so the count logged is the count the database served.
const JOB_FAULT_FILE = env.JOB_FAULT_FILE || '';

// The lab's fault switch (no reload): its lines without # comments, [] when unset or absent.
function faultLines() {
  if (!JOB_FAULT_FILE) return [];
  try {
    return fs.readFileSync(JOB_FAULT_FILE, 'utf8').split(/\r?\n/).map((l) => l.replace(/#.*/, '').trim());
  } catch (err) {
    return []; // absent: no fault
  }
}

// Read at every job run: lines `<job|*> legacy|error`.
function jobFault(name) {
  for (const line of faultLines()) {
    const m = line.match(/^(\S+)\s+(legacy|error)$/);
    if (m && (m[1] === '*' || m[1] === name)) return m[2];
  }
  return null;
}

// `http delay <ms>`: milliseconds every request waits first; the file is read at most once a second.
const httpFault = { readAt: 0, delayMs: 0 };
function httpFaultDelay() {
  if (!JOB_FAULT_FILE) return 0;
  const now = Date.now();
  if (now - httpFault.readAt >= 1000) {
    httpFault.readAt = now;
    const m = faultLines().map((l) => l.match(/^http\s+delay\s+(\d+)$/)).find(Boolean);
    httpFault.delayMs = m ? Number(m[1]) : 0;
  }
  return httpFault.delayMs;
}

async function dailyRewards(optimized, say) {
  if (optimized) {
    say('✅ Optimized: Using window function query');
    const users = Number((await db('SELECT count(*) AS n FROM app_users')).rows[0].n);
    const res = await db(
      `INSERT INTO reward_reminders (user_id, remind_on)
       SELECT u.id, current_date
         FROM app_users u
         LEFT JOIN (SELECT user_id, claimed_on,
                           row_number() OVER (PARTITION BY user_id ORDER BY claimed_on DESC) AS rn
                      FROM daily_reward_claims) last ON last.user_id = u.id AND last.rn = 1
        WHERE last.claimed_on IS DISTINCT FROM current_date
       ON CONFLICT (user_id, remind_on) DO NOTHING`);
    return { users, reminders: res.rowCount };
  }
  say('Legacy: one query per user');
  const ids = (await db('SELECT id FROM app_users ORDER BY id')).rows.map((r) => r.id);
  let reminders = 0;
  for (const id of ids) {
    const res = await db(
      `INSERT INTO reward_reminders (user_id, remind_on)
       SELECT $1, current_date
        WHERE NOT EXISTS (SELECT 1 FROM daily_reward_claims WHERE user_id = $1 AND claimed_on = current_date)
       ON CONFLICT (user_id, remind_on) DO NOTHING`, [id]);
    reminders += res.rowCount;
  }
  return { users: ids.length, reminders };
}

async function badgeUnlock(optimized, say) {
  const badges = (await db('SELECT id, min_claims FROM badges ORDER BY min_claims')).rows;
  const unlockedUsers = new Set();
  let users;
  if (optimized) {
    users = Number((await db('SELECT count(*) AS n FROM app_users')).rows[0].n);
    for (const badge of badges) { // one set-based statement per badge
      const res = await db(
        `INSERT INTO user_badges (user_id, badge_id)
         SELECT c.user_id, $1 FROM daily_reward_claims c JOIN app_users u ON u.id = c.user_id
          GROUP BY c.user_id HAVING count(*) >= $2
         ON CONFLICT (user_id, badge_id) DO NOTHING RETURNING user_id`, [badge.id, badge.min_claims]);
      for (const row of res.rows) unlockedUsers.add(row.user_id);
    }
  } else {
    const ids = (await db('SELECT id FROM app_users ORDER BY id')).rows.map((r) => r.id);
    users = ids.length;
    for (const id of ids) { // per user: its claims, then one statement per badge it qualifies for
      const claims = Number((await db('SELECT count(*) AS n FROM daily_reward_claims WHERE user_id = $1', [id])).rows[0].n);
      for (const badge of badges) {
        if (claims < badge.min_claims) continue;
        const res = await db(
          'INSERT INTO user_badges (user_id, badge_id) VALUES ($1, $2) ON CONFLICT (user_id, badge_id) DO NOTHING',
          [id, badge.id]);
        if (res.rowCount > 0) unlockedUsers.add(id);
      }
    }
  }
  say(`✅ Batch unlocked: ${unlockedUsers.size} users`);
  return { users, unlocked_users: unlockedUsers.size };
}

// name -> [seed's log tag, flag, implementation, metric label]
const JOBS = {
  'daily-rewards': ['Daily Reward Reminders', 'USE_OPTIMIZED_DAILY_REWARDS', dailyRewards, 'daily_rewards'],
  'badge-unlock': ['Badge Auto Unlock', 'USE_OPTIMIZED_BADGE_UNLOCK', badgeUnlock, 'badge_unlock'],
};
const jobsRunning = new Set();

// Runs a job once; resolves to its result (status ok or error), never rejects.
async function runJob(name, trigger) {
  const [tag, flagName, impl, label] = JOBS[name];
  const fault = jobFault(name);
  const optimized = flag(flagName) && fault !== 'legacy';
  const jobPath = optimized ? 'optimized' : 'legacy';
  const say = (msg, extra = {}) => log('info', `[${tag}] ${msg}`, { job: name, ...extra });
  const ctx = { route: `job:${name}`, queries: 0 };
  const started = process.hrtime.bigint();
  jobsRunning.add(name);
  let result; let error = null;
  try {
    result = await requestContext.run(ctx, async () => {
      if (fault === 'error') throw new Error(`injected fault (JOB_FAULT_FILE ${JOB_FAULT_FILE}): ${name} fails`);
      return impl(optimized, say);
    });
  } catch (err) {
    error = err;
  } finally {
    jobsRunning.delete(name);
  }
  const ms = Math.round(Number(process.hrtime.bigint() - started) / 1e6);
  const status = error ? 'error' : 'ok';
  jobRuns.inc({ job: label, path: jobPath, status });
  queriesPerJob.observe({ job: label, path: jobPath }, ctx.queries);
  jobDuration.observe({ job: label, path: jobPath }, ms / 1000);
  jobLastQueries.set({ job: label }, ctx.queries);
  const users = result ? ` (${result.users} users)` : '';
  say(`Query count: ${ctx.queries}${users}`, { path: jobPath, trigger });
  if (error) {
    log('error', `[${tag}] Job failed: ${error.message}`, { job: name, path: jobPath, trigger });
    errorLog(`[${tag}] Job failed: ${error.message}`);
    reportError(error, { job: name });
  } else {
    say(`Completed in ${ms}ms`, { path: jobPath, trigger });
  }
  return { job: name, path: jobPath, status, queries: ctx.queries, duration_ms: ms, fault,
    ...(result || {}), ...(error ? { error: error.message } : {}) };
}

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);
async function jobHandler(req, res, name) {
  if (req.method !== 'POST') {
    send(res, 405, { error: `method ${req.method} not allowed: POST runs the job` });
    return;
  }
  if (!['true', '1', 'yes', 'on'].includes(String(env.JOBS_HTTP_REMOTE || '').toLowerCase())
      && !LOOPBACK.has(req.socket.remoteAddress)) {
    send(res, 403, { error: 'jobs run from loopback only (JOBS_HTTP_REMOTE=true opens them)' });
    return;
  }
  if (!Object.prototype.hasOwnProperty.call(JOBS, name)) {
    send(res, 404, { error: `no job ${JSON.stringify(name)}; jobs: ${Object.keys(JOBS).join(', ')}` });
    return;
  }
  if (jobsRunning.has(name)) {
    send(res, 409, { error: `${name} is running` });
    return;
  }
  const out = await runJob(name, 'http');
  send(res, out.status === 'ok' ? 200 : 500, out);
}

// [pattern, regex, handler(req, res, match)]: the pattern is the `route` label of the metrics.
const ROUTES = [
  ['/health', /^\/health$/, health],
  ['/health/pool', /^\/health\/pool$/, poolStats],
  ['/api/flags', /^\/api\/flags$/, flags],
  ['/metrics', /^\/metrics$/, metricsHandler],
  ['/api/standings/:id', /^\/api\/standings\/([^/]+)$/, (req, res, m) => standings(req, res, decodeURIComponent(m[1]))],
  ['/api/jobs/:name', /^\/api\/jobs\/([^/]+)$/, (req, res, m) => jobHandler(req, res, decodeURIComponent(m[1]))],
];

function matchRoute(pathname) {
  for (const [pattern, re, handler] of ROUTES) {
    const m = pathname.match(re);
    if (m) return { pattern, handler, m };
  }
  return { pattern: 'unmatched', handler: null, m: null };
}

async function route(req, res, matched) {
  if (matched.pattern === '/api/jobs/:name') return matched.handler(req, res, matched.m); // POST
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, { error: `method ${req.method} not allowed` });
    return;
  }
  if (matched.handler) return matched.handler(req, res, matched.m);
  send(res, 404, { error: `no route for ${new URL(req.url, 'http://localhost').pathname}` });
}

// ---- lifecycle --------------------------------------------------------------------------------
let shuttingDown = false;
const server = http.createServer((req, res) => {
  let matched;
  try {
    matched = matchRoute(new URL(req.url, 'http://localhost').pathname);
  } catch (err) { // a malformed request target
    matched = { pattern: 'unmatched', handler: null, m: null };
  }
  const ctx = { route: matched.pattern, queries: 0 };
  const end = httpDuration.startTimer({ route: matched.pattern });
  res.on('finish', () => {
    end({ status_code: res.statusCode });
    if (matched.pattern !== '/metrics') queriesPerRequest.observe({ route: matched.pattern }, ctx.queries);
  });
  const delay = httpFaultDelay();
  const handle = delay ? () => new Promise((ok) => { setTimeout(ok, delay); }).then(() => route(req, res, matched))
    : () => route(req, res, matched);
  requestContext.run(ctx, handle).catch((err) => {
    log('error', 'request failed', { url: req.url, error: err.message });
    errorLog(`request failed: ${req.method} ${matched.pattern}: ${err.message}`);
    reportError(err, { route: matched.pattern, method: req.method });
    if (!res.headersSent) send(res, 500, { error: 'internal error' });
  });
});
server.keepAliveTimeout = intEnv('HTTP_KEEPALIVE_TIMEOUT_MS', 65000); // longer than nginx's upstream keepalive_timeout

async function closeClients() {
  let redisClose = Promise.resolve();
  if (redis && redis.isOpen) redisClose = redis.isReady ? redis.quit() : redis.disconnect();
  await Promise.allSettled([withTimeout(pool.end(), 3000, 'pg pool end'), withTimeout(redisClose, 2000, 'redis quit'),
    ...(sentry ? [sentry.flush(2000)] : [])]);
}

function shutdown(reason) {
  if (shuttingDown) return;
  shuttingDown = true;
  log('info', 'shutting down: no new connections, finishing in-flight requests', { reason });
  clearInterval(flagTimer);
  jobTimers.forEach(clearInterval);
  server.close(async () => {
    await closeClients();
    log('info', 'stopped cleanly');
    process.exit(0);
  });
  if (typeof server.closeIdleConnections === 'function') server.closeIdleConnections();
  setTimeout(() => {
    log('warn', 'shutdown timeout: closing remaining connections');
    if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
    process.exit(0);
  }, SHUTDOWN_TIMEOUT_MS).unref();
}

process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('message', (msg) => { if (msg === 'shutdown') shutdown('pm2 shutdown message'); });
if (sentry) {
  // Only with Sentry on: report, wait for the send (bounded), then crash as Node would have.
  // Unhandled rejections arrive here too (origin unhandledRejection: Node's default mode, throw).
  process.on('uncaughtException', (err, origin) => {
    log('error', 'uncaught exception', { origin, error: err && err.message });
    errorLog(`uncaught exception (${origin}): ${err && err.message}`);
    reportError(err, { origin });
    sentry.flush(2000).finally(() => process.exit(1));
  });
}

let flagTimer = null;
const jobTimers = [];
(async () => {
  await refreshTableFlags();
  flagTimer = setInterval(() => { refreshTableFlags(); }, FLAG_REFRESH_MS);
  flagTimer.unref();
  // Job timers: off unless an interval is set; under PM2 cluster mode in the first worker only.
  if ((env.NODE_APP_INSTANCE ?? '0') === '0') {
    for (const [name, envName] of [['daily-rewards', 'JOB_DAILY_REWARDS_INTERVAL_MS'], ['badge-unlock', 'JOB_BADGE_UNLOCK_INTERVAL_MS']]) {
      const every = intEnv(envName, 0);
      if (every > 0) {
        jobTimers.push(setInterval(() => { if (!jobsRunning.has(name) && !shuttingDown) runJob(name, 'timer'); }, every));
      }
    }
  }
  server.listen(PORT, HOST, () => {
    log('info', 'listening', { host: HOST, port: PORT, flags_table: flagsTableState });
    if (typeof process.send === 'function') process.send('ready'); // PM2 wait_ready
  });
})();
