// Reference OpenID Provider for the benchmark: panva/node-oidc-provider (v9)
// configured like our IdP. Node cluster, WORKERS processes sharing one Redis.
//
// env: REF_PORT (required), WORKERS (default 2), REDIS_URL, CLIENTS_FILE (JSON
// array of client metadata), BENCH_PASSWORD_HASH (required: argon2id PHC string of the
// password of seller@example.com, made by bench/run.py with our IdP's argon2 parameters).
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import fs from 'node:fs';

import { verify as argon2Verify } from '@node-rs/argon2';
import Provider from 'oidc-provider';

import RedisAdapter from './redis_adapter.mjs';

const PORT = Number(process.env.REF_PORT);
const WORKERS = Number(process.env.WORKERS ?? 2);
if (!PORT) throw new Error('REF_PORT is required');
const PASSWORD_HASH = process.env.BENCH_PASSWORD_HASH ?? '';
if (!PASSWORD_HASH.startsWith('$argon2id$')) throw new Error('BENCH_PASSWORD_HASH (argon2id) is required');

if (cluster.isPrimary) {
  // One ES256 signing key and one cookie-signing key for all workers.
  const jwk = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const workerEnv = {
    BENCH_JWKS: JSON.stringify({ keys: [{ ...jwk, kid: crypto.randomUUID(), alg: 'ES256', use: 'sig' }] }),
    BENCH_COOKIE_KEYS: JSON.stringify([crypto.randomBytes(32).toString('base64url')]),
  };
  let stopping = false;
  const stop = (code) => {
    stopping = true;
    process.exitCode = code;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
  };
  cluster.on('exit', (w, code, signal) => {
    if (!stopping) {
      console.error(`worker ${w.process.pid} died (${signal || code}), stopping`);
      stop(1);
    }
    if (Object.keys(cluster.workers).length === 0) process.exit(); // last worker gone
  });
  let listening = 0;
  cluster.on('listening', () => {
    listening += 1;
    if (listening === WORKERS) {
      const pids = Object.values(cluster.workers).map((w) => w.process.pid);
      console.log(`reference IdP on http://127.0.0.1:${PORT} primary=${process.pid} workers=${pids.join(',')}`);
    }
  });
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));
  for (let i = 0; i < WORKERS; i += 1) cluster.fork(workerEnv);
} else {
  startWorker();
}

function startWorker() {
  const issuer = `http://127.0.0.1:${PORT}`;
  const clients = JSON.parse(fs.readFileSync(process.env.CLIENTS_FILE, 'utf8'));
  const account = { sub: 'bench-seller-1', email: 'seller@example.com' };

  const provider = new Provider(issuer, {
    adapter: RedisAdapter,
    clients,
    jwks: JSON.parse(process.env.BENCH_JWKS),
    cookies: { keys: JSON.parse(process.env.BENCH_COOKIE_KEYS) },
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    scopes: ['openid', 'email', 'offline_access', 'api:read'],
    responseTypes: ['code'],
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    pkce: { required: () => true }, // S256 is the only method oidc-provider v9 accepts
    features: {
      devInteractions: { enabled: false },
      introspection: {
        enabled: true,
        // any authenticated confidential client may introspect (resource servers)
        allowedPolicy: async (ctx, client) => client.clientAuthMethod !== 'none',
      },
      revocation: { enabled: true },
      clientCredentials: { enabled: true },
      userinfo: { enabled: true },
    },
    rotateRefreshToken: true,
    // oidc-provider drops offline_access unless prompt=consent (OIDC Core 11), so refresh
    // tokens are issued to any client allowed the grant, and no token is tied to the
    // browser session (otherwise every token use also looks the session up).
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    findAccount: async (ctx, sub) => (sub !== account.sub ? undefined : {
      accountId: sub,
      claims: async () => ({ sub, email: account.email, email_verified: true }),
    }),
    interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
    // Consent is auto-granted: every statically configured client is first-party,
    // so the grant covers whatever OIDC scopes/claims the request asked for.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
      grant.addOIDCClaims([...ctx.oidc.requestParamClaims]);
      await grant.save();
      return grant;
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>error</title><pre>${escapeHtml(JSON.stringify(out))}</pre>`;
    },
  });

  // Minimal interaction: login form only (consent never prompts, see loadExistingGrant).
  provider.use(async (ctx, next) => {
    const m = ctx.path.match(/^\/interaction\/([\w-]+)(\/login)?$/);
    if (!m) return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== m[1]) ctx.throw(400, 'interaction mismatch');
    if (details.prompt.name !== 'login') ctx.throw(500, `unexpected prompt ${details.prompt.name}`);

    if (ctx.method === 'GET' && !m[2]) {
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, '');
      return undefined;
    }
    if (ctx.method !== 'POST' || !m[2]) ctx.throw(405);

    const form = new URLSearchParams(await readBody(ctx.req));
    // Like our IdP: one argon2id verification per attempt, whether or not the email is known
    // (@node-rs/argon2 runs it on the libuv thread pool, off the event loop).
    const passwordOk = await argon2Verify(PASSWORD_HASH, form.get('password') ?? '');
    const ok = form.get('email') === account.email && passwordOk;
    if (!ok) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, 'Invalid email or password.');
      return undefined;
    }
    ctx.respond = false; // interactionFinished writes the 303 itself
    await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: account.sub } }, {
      mergeWithLastSubmission: false,
    });
    return undefined;
  });

  provider.listen(PORT, '127.0.0.1');
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readBody(req, limit = 16 * 1024) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > limit) throw Object.assign(new Error('body too large'), { status: 413 });
  }
  return body;
}

function loginPage(uid, error) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
${error ? `<p role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
  <label>Email <input type="email" name="email" autocomplete="username" required></label>
  <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in</button>
</form>
</body></html>`;
}
