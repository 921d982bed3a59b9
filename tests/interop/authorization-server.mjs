// An OAuth 2.0 authorization server built on oidc-provider (a certified OpenID Provider), for
// tests/interop.rs. Machine clients only: the client_credentials grant, RFC 8707 resource
// indicators turning `resource=<MCP server URL>` into a JWT access token (RFC 9068) with that
// audience, and four pre-registered clients:
//
//   basic-client   client_secret_basic
//   post-client    client_secret_post
//   rs256-client   private_key_jwt, RS256 (key pair generated at start)
//   es256-client   private_key_jwt, ES256 (key pair generated at start)
//
// usage: node authorization-server.mjs [--ttl SECONDS] [--skew SECONDS] [--oidc-discovery-only]
//   --ttl                  access token lifetime (default 300 s)
//   --skew                 adds SECONDS to the `expires_in` of token responses (default 0), as a
//                          server whose clock runs ahead of the client's would: the client then
//                          presents tokens the resource server finds expired
//   --oidc-discovery-only  answer 404 at /.well-known/oauth-authorization-server, as OpenID
//                          providers without RFC 8414 metadata do (oidc-provider serves both
//                          documents): clients must fall back to /.well-known/openid-configuration
//
// Listens on 127.0.0.1 on a free port and prints one JSON line on stdout once it accepts
// connections: {"ready":"authorization-server","issuer":…,"clients":{id:{method,secret|private_key_pem}}}.
// Exits when its standard input closes (the test that started it is gone) or on SIGTERM.
//
// Admin endpoints for the tests (loopback only, never part of a real deployment):
//   GET  /admin/counts  token requests served: total, ok, failed, by client and method (the way
//                       the client authenticated: Basic header, client_secret in the body, or a
//                       client_assertion), the errors returned, the resources and scopes asked
//                       for, the metadata documents fetched (path and status → count), and the
//                       header and claims of every client assertion (alg, typ, kid, aud,
//                       lifetime; as received, after oidc-provider checked them or not).
//   POST /admin/reset   zeroes the counters.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at === -1 ? fallback : process.argv[at + 1];
}

const ttl = Number.parseInt(option('--ttl', '300'), 10);
if (!Number.isInteger(ttl) || ttl < 1) {
  console.error(`--ttl must be a positive number of seconds, got ${option('--ttl')}`);
  process.exit(2);
}
const skew = Number.parseInt(option('--skew', '0'), 10);
if (!Number.isInteger(skew) || skew < 0) {
  console.error(`--skew must be a number of seconds >= 0, got ${option('--skew')}`);
  process.exit(2);
}
const oidcDiscoveryOnly = process.argv.includes('--oidc-discovery-only');
const SCOPE = 'mcp:tools';

// Keys: one to sign access tokens, one per private_key_jwt client.
const signing = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rs256 = generateKeyPairSync('rsa', { modulusLength: 2048 });
const es256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });

const publicJwk = (pair, alg, kid) => ({ ...pair.publicKey.export({ format: 'jwk' }), alg, use: 'sig', kid });
const privatePem = (pair) => pair.privateKey.export({ type: 'pkcs8', format: 'pem' });
const secret = () => randomBytes(24).toString('base64url');

const common = {
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: SCOPE,
};
const registered = [
  { ...common, client_id: 'basic-client', client_secret: secret(), token_endpoint_auth_method: 'client_secret_basic' },
  { ...common, client_id: 'post-client', client_secret: secret(), token_endpoint_auth_method: 'client_secret_post' },
  {
    ...common,
    client_id: 'rs256-client',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: [publicJwk(rs256, 'RS256', 'rs256-client-key')] },
  },
  {
    ...common,
    client_id: 'es256-client',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks: { keys: [publicJwk(es256, 'ES256', 'es256-client-key')] },
  },
];

// ---------------------------------------------------------------------------------------------
// Counters

let counts;
function resetCounts() {
  counts = {
    token_requests: 0,
    ok: 0,
    failed: 0,
    by_client: {},
    errors: [],
    resources: {},
    scopes: {},
    metadata: {},
    assertions: [],
  };
}
resetCounts();

function bump(map, key) {
  map[key] = (map[key] ?? 0) + 1;
}

// The parts of a client assertion worth checking; decoded only (oidc-provider verifies it).
function describeAssertion(jwt) {
  try {
    const [header, payload] = jwt.split('.', 2).map((part) => JSON.parse(Buffer.from(part, 'base64url')));
    return {
      alg: header.alg,
      typ: header.typ,
      kid: header.kid,
      iss: payload.iss,
      sub: payload.sub,
      aud: payload.aud,
      lifetime: payload.exp - payload.iat,
      jti: typeof payload.jti === 'string' && payload.jti.length > 0,
    };
  } catch {
    return { malformed: true };
  }
}

// How the request authenticated, from what it carried (not from the client's registration).
function carriedMethod(ctx, params) {
  if (ctx.get('authorization')) return 'client_secret_basic';
  if (params.client_assertion) return 'private_key_jwt';
  if (params.client_secret) return 'client_secret_post';
  return 'none';
}

// ---------------------------------------------------------------------------------------------
// The provider. Its issuer is its own URL, known once the port is.

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: registered,
  jwks: { keys: [{ ...signing.privateKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig', kid: 'as-signing-key' }] },
  cookies: { keys: [secret()] },
  scopes: ['openid', SCOPE],
  claims: { openid: ['sub'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    revocation: { enabled: false },
    introspection: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => false,
      // Any http URL on 127.0.0.1 is a resource server of ours (the MCP server's port is only
      // known after this server started). The token is a JWT for exactly that audience.
      getResourceServerInfo: (ctx, resource) => {
        const url = URL.parse(resource);
        if (!url || url.protocol !== 'http:' || url.hostname !== '127.0.0.1') {
          throw new errors.InvalidTarget(`unknown resource ${resource}`);
        }
        return {
          scope: SCOPE,
          audience: resource,
          accessTokenTTL: ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? ttl,
  },
  clientBasedCORS: () => false,
  renderError: (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});

// Counts every token request once the provider has answered it.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path.startsWith('/.well-known/')) {
    bump(counts.metadata, `${ctx.path} ${ctx.status}`);
  }
  if (ctx.path !== '/token' || ctx.method !== 'POST') return;
  const params = ctx.oidc?.params ?? {};
  const client = ctx.oidc?.client?.clientId ?? params.client_id ?? 'unknown';
  const method = carriedMethod(ctx, params);
  counts.token_requests += 1;
  const byClient = (counts.by_client[client] ??= {});
  bump(byClient, method);
  if (ctx.status === 200) {
    counts.ok += 1;
    if (skew && typeof ctx.body?.expires_in === 'number') ctx.body.expires_in += skew;
  } else {
    counts.failed += 1;
    counts.errors.push({
      client,
      method,
      status: ctx.status,
      error: ctx.body?.error,
      error_description: ctx.body?.error_description,
    });
  }
  if (params.client_assertion) counts.assertions.push(describeAssertion(params.client_assertion));
  if (params.resource !== undefined) bump(counts.resources, String(params.resource));
  bump(counts.scopes, params.scope ?? '');
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));

// ---------------------------------------------------------------------------------------------
// HTTP: admin endpoints first, everything else to the provider.

const oidc = provider.callback();
server.on('request', (req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/admin/counts' && req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(counts));
  } else if (path === '/admin/reset' && req.method === 'POST') {
    resetCounts();
    res.writeHead(204).end();
  } else if (oidcDiscoveryOnly && path === '/.well-known/oauth-authorization-server') {
    bump(counts.metadata, `${path} 404`);
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'not_found' }));
  } else {
    oidc(req, res);
  }
});

const clients = {};
for (const c of registered) {
  clients[c.client_id] = { method: c.token_endpoint_auth_method };
  if (c.client_secret) clients[c.client_id].secret = c.client_secret;
}
clients['rs256-client'].private_key_pem = privatePem(rs256);
clients['es256-client'].private_key_pem = privatePem(es256);

process.stdout.write(`${JSON.stringify({
  ready: 'authorization-server',
  issuer,
  ttl,
  skew,
  oidc_discovery_only: oidcDiscoveryOnly,
  scope: SCOPE,
  clients,
})}\n`);

function stop() {
  server.closeAllConnections();
  server.close();
  process.exit(0);
}
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
