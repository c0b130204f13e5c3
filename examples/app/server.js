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
const { Pool } = require('pg');
const { createClient } = require('redis');

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
    const res = await pool.query(`SELECT name, value FROM ${FLAGS_TABLE}`);
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
    await withTimeout(pool.query('SELECT 1'), 2000, 'database');
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
        send(res, 200, { ...JSON.parse(hit), fromCache: true });
        return;
      }
    } catch (err) { log('warn', 'cache read failed', { key, error: err.message }); }
  }
  const result = await pool.query(
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

async function route(req, res) {
  const url = new URL(req.url, 'http://localhost');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, { error: `method ${req.method} not allowed` });
    return;
  }
  if (url.pathname === '/health') return health(req, res);
  if (url.pathname === '/health/pool') return poolStats(req, res);
  if (url.pathname === '/api/flags') return flags(req, res);
  const m = url.pathname.match(/^\/api\/standings\/([^/]+)$/);
  if (m) return standings(req, res, decodeURIComponent(m[1]));
  send(res, 404, { error: `no route for ${url.pathname}` });
}

// ---- lifecycle --------------------------------------------------------------------------------
let shuttingDown = false;
const server = http.createServer((req, res) => {
  route(req, res).catch((err) => {
    log('error', 'request failed', { url: req.url, error: err.message });
    if (!res.headersSent) send(res, 500, { error: 'internal error' });
  });
});
server.keepAliveTimeout = intEnv('HTTP_KEEPALIVE_TIMEOUT_MS', 65000); // longer than nginx's upstream keepalive_timeout

async function closeClients() {
  let redisClose = Promise.resolve();
  if (redis && redis.isOpen) redisClose = redis.isReady ? redis.quit() : redis.disconnect();
  await Promise.allSettled([withTimeout(pool.end(), 3000, 'pg pool end'), withTimeout(redisClose, 2000, 'redis quit')]);
}

function shutdown(reason) {
  if (shuttingDown) return;
  shuttingDown = true;
  log('info', 'shutting down: no new connections, finishing in-flight requests', { reason });
  clearInterval(flagTimer);
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

let flagTimer = null;
(async () => {
  await refreshTableFlags();
  flagTimer = setInterval(() => { refreshTableFlags(); }, FLAG_REFRESH_MS);
  flagTimer.unref();
  server.listen(PORT, HOST, () => {
    log('info', 'listening', { host: HOST, port: PORT, flags_table: flagsTableState });
    if (typeof process.send === 'function') process.send('ready'); // PM2 wait_ready
  });
})();
