// An MCP server built with the official TypeScript SDK (@modelcontextprotocol/sdk), Streamable
// HTTP, stateless, for tests/interop.rs. It is an OAuth 2.0 protected resource:
//
//   - every request to /mcp needs `Authorization: Bearer <JWT>`, verified against the
//     authorization server's JWKS (issuer, audience = this server's URL, `typ` at+jwt, not
//     expired, scope mcp:tools), through the SDK's requireBearerAuth middleware; otherwise
//     401 with `WWW-Authenticate: Bearer error="invalid_token", …, resource_metadata="…"`;
//   - RFC 9728 protected resource metadata at /.well-known/oauth-protected-resource/mcp (the
//     SDK's mcpAuthMetadataRouter), naming the authorization server;
//   - one tool, `echo`, which returns its `message` (and, as structured content, the client
//     the token was issued to).
//
// usage: node mcp-server.mjs --issuer URL   (the authorization server)
//
// Listens on 127.0.0.1 on a free port and prints one JSON line on stdout once it accepts
// connections: {"ready":"mcp-server","url":…,"resource_metadata":…}. Exits when its standard
// input closes (the test that started it is gone) or on SIGTERM.
//
// Admin endpoints for the tests (loopback only, never part of a real deployment):
//   GET  /admin/counts      requests to /mcp: total, ok (token accepted), unauthorized without
//                           a token, unauthorized with a token (by reason), the distinct tokens
//                           accepted (by client), the number of revoked tokens, and the
//                           metadata documents fetched here (path and status → count).
//   POST /admin/revoke-all  every token accepted so far is revoked: presenting it again gets
//                           401 error="invalid_token" ("Token has been revoked").
//   POST /admin/reject-all  from now on every token is refused that way, new ones included.

import http from 'node:http';
import process from 'node:process';

import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import {
  getOAuthProtectedResourceMetadataUrl,
  mcpAuthMetadataRouter,
} from '@modelcontextprotocol/sdk/server/auth/router.js';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify } from 'jose';
import * as z from 'zod';

function option(name) {
  const at = process.argv.indexOf(name);
  return at === -1 ? undefined : process.argv[at + 1];
}

const issuer = option('--issuer');
if (!issuer) {
  console.error('usage: node mcp-server.mjs --issuer URL');
  process.exit(2);
}
const SCOPE = 'mcp:tools';

// The authorization server's metadata (its OpenID Connect discovery document, which every
// configuration of the test authorization server serves): its JWKS, and the document the SDK's
// metadata router also serves.
const response = await fetch(new URL('/.well-known/openid-configuration', issuer), {
  signal: AbortSignal.timeout(10_000),
});
if (!response.ok) {
  console.error(`authorization server metadata: HTTP ${response.status}`);
  process.exit(1);
}
const oauthMetadata = await response.json();
const jwks = createRemoteJWKSet(new URL(oauthMetadata.jwks_uri));

const app = createMcpExpressApp({ host: '127.0.0.1' });
const server = http.createServer(app);
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const mcpUrl = new URL(`http://127.0.0.1:${server.address().port}/mcp`);
const resourceMetadataUrl = getOAuthProtectedResourceMetadataUrl(mcpUrl);

// ---------------------------------------------------------------------------------------------
// Counters and revocation

const accepted = new Map(); // jti → client_id
const revoked = new Set(); // jti
let rejectAll = false;
let counts;
function resetCounts() {
  counts = {
    requests: 0,
    ok: 0,
    unauthorized_without_token: 0,
    unauthorized_with_token: {},
    other: {},
    metadata: {},
  };
}
resetCounts();

function bump(map, key) {
  map[key] = (map[key] ?? 0) + 1;
}

function snapshot() {
  const byClient = {};
  for (const client of accepted.values()) bump(byClient, client);
  return { ...counts, tokens_accepted: accepted.size, tokens_by_client: byClient, revoked: revoked.size };
}

// ---------------------------------------------------------------------------------------------
// Token verification: a JWT access token (RFC 9068) from the authorization server for this
// server's URL.

const verifier = {
  async verifyAccessToken(token) {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        issuer: oauthMetadata.issuer,
        audience: mcpUrl.href,
        typ: 'at+jwt',
        algorithms: ['RS256'],
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw new InvalidTokenError('Token has expired');
      throw new InvalidTokenError(`Token rejected (${err.code ?? err.name})`);
    }
    if (rejectAll || revoked.has(payload.jti)) throw new InvalidTokenError('Token has been revoked');
    accepted.set(payload.jti, payload.client_id);
    const aud = Array.isArray(payload.aud) ? payload.aud[0] : payload.aud;
    return {
      token,
      clientId: payload.client_id,
      scopes: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
      expiresAt: payload.exp,
      resource: new URL(aud),
    };
  },
};

const bearer = requireBearerAuth({
  verifier,
  requiredScopes: [SCOPE],
  resourceMetadataUrl,
  expectedResource: mcpUrl,
});

// Counts every request to /mcp once answered.
function count(req, res, next) {
  counts.requests += 1;
  res.on('finish', () => {
    if (res.statusCode === 200) {
      counts.ok += 1;
    } else if (res.statusCode === 401 && req.headers.authorization === undefined) {
      counts.unauthorized_without_token += 1;
    } else if (res.statusCode === 401) {
      const challenge = String(res.getHeader('www-authenticate') ?? '');
      const reason = /error_description="([^"]*)"/.exec(challenge)?.[1] ?? challenge;
      bump(counts.unauthorized_with_token, reason);
    } else {
      bump(counts.other, String(res.statusCode));
    }
  });
  next();
}

// ---------------------------------------------------------------------------------------------
// The MCP server: a fresh server and transport per request (stateless Streamable HTTP).

function mcpServer() {
  const mcp = new McpServer({ name: 'tower-client-credentials-interop', version: '0.0.0' });
  mcp.registerTool(
    'echo',
    {
      description: 'Returns its message.',
      inputSchema: { message: z.string() },
      outputSchema: { message: z.string(), client_id: z.string() },
    },
    async ({ message }, extra) => ({
      content: [{ type: 'text', text: message }],
      structuredContent: { message, client_id: extra.authInfo?.clientId ?? '' },
    }),
  );
  return mcp;
}

// Counts the metadata documents fetched here (path and status).
app.use('/.well-known', (req, res, next) => {
  res.on('finish', () => bump(counts.metadata, `${req.originalUrl.split('?')[0]} ${res.statusCode}`));
  next();
});
app.use(mcpAuthMetadataRouter({
  oauthMetadata,
  resourceServerUrl: mcpUrl,
  scopesSupported: [SCOPE],
  resourceName: 'tower-client-credentials interop MCP server',
}));

app.get('/admin/counts', (req, res) => res.json(snapshot()));
app.post('/admin/revoke-all', (req, res) => {
  for (const jti of accepted.keys()) revoked.add(jti);
  res.json({ revoked: revoked.size });
});
app.post('/admin/reject-all', (req, res) => {
  rejectAll = true;
  res.json({ reject_all: true });
});

app.post('/mcp', count, bearer, async (req, res) => {
  const mcp = mcpServer();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on('close', () => {
    transport.close();
    mcp.close();
  });
  try {
    await mcp.connect(transport);
    await transport.handleRequest(req, res, req.body);
  } catch (err) {
    console.error('MCP request failed', err);
    if (!res.headersSent) {
      res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
    }
  }
});
// Stateless: no standalone SSE stream, no session to delete.
const notAllowed = (req, res) => {
  res.status(405).set('allow', 'POST').json({
    jsonrpc: '2.0',
    error: { code: -32000, message: 'Method not allowed.' },
    id: null,
  });
};
app.get('/mcp', count, bearer, notAllowed);
app.delete('/mcp', count, bearer, notAllowed);

process.stdout.write(`${JSON.stringify({
  ready: 'mcp-server',
  url: mcpUrl.href,
  resource_metadata: resourceMetadataUrl,
  issuer: oauthMetadata.issuer,
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
