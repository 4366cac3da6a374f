// The loopback OpenID Connect provider: panva's oidc-provider (OpenID certified) configured from
// the JSON file lakehub/local/idp/oidc.py writes. Run as `node oidc_provider.mjs <config.json>`.
//
// Config: {issuer, port, users: {name: password}, groups: {group: [names]},
//          clients: [{client_id, client_secret, redirect_uris}]}.
// Users and groups are re-read when the file changes (set_groups / set_users on the Python handle):
// claims always show the current groups, and a removed user can neither sign in nor refresh.
//
// What this file adds to the provider is the interaction (oidc-provider's own devInteractions are
// for development only): a login form checked against the users, and consent granted for the one
// registered (first-party) client.
import { createHash, generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

import Provider from 'oidc-provider';

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node oidc_provider.mjs <config.json>');
  process.exit(2);
}

let config = JSON.parse(readFileSync(configPath, 'utf8'));
let configMtime = statSync(configPath).mtimeMs;

function current() {
  // users and groups as the file says now (the handle rewrites it atomically)
  try {
    const mtime = statSync(configPath).mtimeMs;
    if (mtime !== configMtime) {
      const fresh = JSON.parse(readFileSync(configPath, 'utf8'));
      config = { ...config, users: fresh.users, groups: fresh.groups };
      configMtime = mtime;
    }
  } catch (err) {
    // a missing or half-written file keeps the last good users and groups
  }
  return config;
}

const subject = (name) => createHash('sha256').update(name).digest('hex').slice(0, 24);

function nameOf(sub) {
  return Object.keys(current().users).find((name) => subject(name) === sub);
}

function passwordMatches(name, password) {
  const expected = current().users[name];
  if (typeof expected !== 'string') return false;
  const digest = (s) => createHash('sha256').update(String(s)).digest();
  return timingSafeEqual(digest(expected), digest(password));
}

function claimsOf(name) {
  const groups = Object.entries(current().groups)
    .filter(([, members]) => members.includes(name))
    .map(([group]) => group)
    .sort();
  return {
    sub: subject(name),
    preferred_username: name,
    name: name.charAt(0).toUpperCase() + name.slice(1),
    email: `${name}@lakehub.test`,
    email_verified: true,
    groups,
  };
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head><body>${body}</body></html>`;
}

function loginPage(uid, error) {
  const alert = error ? `<p class="error" role="alert">${escape(error)}</p>` : '';
  return page('lakehub test sign-in', `
<h1>Sign in</h1>${alert}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>`);
}

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => (c.redirect_uris.length ? {
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post', // what OAuthenticator sends by default
  } : {
    // no redirect URI: the client exists (discovery, tokens for nobody) but cannot sign anyone in
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: [],
    grant_types: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  })),
  jwks: { keys: [{ ...signingKey, kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  routes: { authorization: '/authorize', userinfo: '/userinfo', jwks: '/jwks', token: '/token' },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // The hub may read its user's groups from the id_token (LAKEHUB_OIDC_USERDATA_FROM_ID_TOKEN).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  pkce: { methods: ['S256'] },
  // The hub re-checks membership with the refresh token: one for every sign-in, each used once.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  expiresWithSession: async () => false,
  ttl: {
    AccessToken: 3600, AuthorizationCode: 120, IdToken: 3600, RefreshToken: 86400,
    Interaction: 3600, Session: 86400, Grant: 86400,
  },
  async findAccount(ctx, sub) {
    const name = nameOf(sub);
    if (!name) return undefined; // a removed account: no claims, no refresh
    return { accountId: sub, claims: async () => claimsOf(name) };
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('sign-in error', `<h1>Sign-in error</h1>${Object.entries(out)
      .map(([k, v]) => `<p><strong>${escape(k)}</strong>: ${escape(v)}</p>`).join('')}`);
  },
});

async function formBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The interaction: /interaction/<uid> shows the login form (or grants consent for the registered
// client and returns to the provider); /interaction/<uid>/login checks the password.
provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(ctx.path);
  if (!match) return next();
  ctx.set('Cache-Control', 'no-store');
  const [, uid, login] = match;
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('sign-in error', '<h1>This sign-in has expired</h1><p>Start again from the application.</p>');
    return undefined;
  }
  if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
  const { prompt, params, session, grantId } = details;

  if (!login && ctx.method === 'GET' && prompt.name === 'login') {
    ctx.type = 'html';
    ctx.body = loginPage(uid, '');
    return undefined;
  }
  if (login && ctx.method === 'POST' && prompt.name === 'login') {
    const form = await formBody(ctx.req);
    const username = form.get('username') || '';
    if (!passwordMatches(username, form.get('password') || '')) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage(uid, 'Invalid username or password.');
      return undefined;
    }
    ctx.respond = false;
    return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: subject(username) } },
      { mergeWithLastSubmission: false });
  }
  if (!login && ctx.method === 'GET' && prompt.name === 'consent') {
    // Consent for the first-party client: grant what it asked for and go back to the provider.
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    ctx.respond = false;
    return provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId: await grant.save() } },
      { mergeWithLastSubmission: true });
  }
  ctx.throw(405, 'not allowed here');
  return undefined;
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider ${config.issuer} listening`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
