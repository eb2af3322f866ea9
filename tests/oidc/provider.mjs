// A real OpenID provider (oidc-provider, a certified implementation) for the jwt-authz test
// suite, so tests verify access tokens that a standard authorization server issued, not only
// tokens the test kit minted itself.
//
// Usage: node tests/oidc/provider.mjs [PORT]
//   PORT (or $OIDC_PORT) is the loopback port to listen on; 0 or none picks a free one.
//   $OIDC_DPOP_REQUIRE_NONCE=1 makes the token endpoint demand a DPoP nonce (RFC 9449 §8).
// Once it accepts connections it prints one line on stdout: `listening <issuer>`, with
// issuer `http://127.0.0.1:<port>`. It exits when its standard input closes, so it never
// outlives the test that started it.
//
// What it issues, all through client_credentials at POST <issuer>/token:
//   - resource `https://api.example.com` (RFC 8707 `resource` parameter, also the default):
//     JWT access tokens (RFC 9068, header `typ: at+jwt`) signed RS256 by a key of the
//     discovery document's jwks_uri, `aud` the resource, scopes out of
//     `read:messages write:messages admin`;
//   - client `bearer-client` / secret `bearer-secret` (client_secret_basic): plain Bearer
//     tokens, or DPoP-bound ones (`cnf.jkt`, token_type DPoP) when the request carries a
//     DPoP proof (`dpop_bound_access_tokens` is false, so both work);
//   - client `mtls-client` (tls_client_auth, subject DN `CN=jwt-authz-test-client`):
//     certificate-bound tokens (RFC 8705, `cnf["x5t#S256"]`).
//
// Client certificates. The tests talk plain HTTP on loopback, so there is no TLS handshake
// to take a certificate from. As behind a TLS-terminating proxy (nginx's
// `$ssl_client_escaped_cert`, Envoy's forwarded client certificate), the client
// certificate arrives in the `x-client-cert` request header as URL-encoded PEM, and
// `features.mTLS.getCertificate` reads it from there. The header is trusted as a verified
// certificate: this provider must only ever listen on loopback.
//
//   - resource `https://opaque.example.com`: opaque access tokens (RFC 7662 introspection
//     only), same scopes, whose introspection answer carries `sub` = the client id (as the
//     provider's JWTs for client_credentials do);
//   - with $OIDC_MCP_RESOURCE set, that resource (an MCP server's URL): JWT access tokens
//     with `aud` the URL and scopes out of `mcp mcp:tools mcp:admin`; client `mcp-client`
//     (client_secret_basic, secret `mcp-secret`) may be granted `mcp mcp:tools` only;
//   - clients `jwt-authz` (client_secret_basic, secret `introspection-secret`) and
//     `jwt-authz-post` (client_secret_post, same secret): the resource server, allowed to
//     introspect and nothing else.
//
// Introspection is on, but oidc-provider refuses to introspect JWT access tokens
// (`unsupported_token_type`): tests verify these tokens themselves, through the jwks_uri.
// Token revocation (RFC 7009) is on, so a test can revoke an opaque token at the source.
//
// The signing keys are generated at start: an RSA key (kid `oidc-rs256`, signs the access
// tokens) and a P-256 key (kid `oidc-es256`). Nothing is persisted.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const RESOURCE = 'https://api.example.com';
const OPAQUE_RESOURCE = 'https://opaque.example.com';
// The resource server's own clients, which may introspect tokens (and nothing else).
const INTROSPECTORS = new Set(['jwt-authz', 'jwt-authz-post']);
const RESOURCE_SCOPES = 'read:messages write:messages admin';
const MTLS_SUBJECT_DN = 'CN=jwt-authz-test-client';
const CLIENT_CERT_HEADER = 'x-client-cert';

const requestedPort = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  console.error(`invalid port: ${process.argv[2] ?? process.env.OIDC_PORT}`);
  process.exit(64);
}
const requireDpopNonce = process.env.OIDC_DPOP_REQUIRE_NONCE === '1';
// An MCP server's resource URL (RFC 8707), when a test fronts one: JWT access tokens for
// it carry `aud` = the URL and scopes out of MCP_SCOPES.
const mcpResource = process.env.OIDC_MCP_RESOURCE || undefined;
const MCP_SCOPES = 'mcp mcp:tools mcp:admin';

function signingKey(kid, alg, type, options) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

// The PEM certificate from the `x-client-cert` header, or undefined when there is none.
function clientCertificate(ctx) {
  const value = ctx.get(CLIENT_CERT_HEADER);
  if (!value) {
    return undefined;
  }
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

function subjectDn(pem) {
  try {
    // Node prints one RDN a line; RFC 4514 joins them with commas, most specific first.
    return new crypto.X509Certificate(pem).subject.split('\n').reverse().join(',');
  } catch {
    return undefined;
  }
}

const server = http.createServer();
server.listen(requestedPort, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    jwks: {
      keys: [
        signingKey('oidc-rs256', 'RS256', 'rsa', { modulusLength: 2048 }),
        signingKey('oidc-es256', 'ES256', 'ec', { namedCurve: 'P-256' }),
      ],
    },
    clients: [
      {
        client_id: 'bearer-client',
        client_secret: 'bearer-secret',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        dpop_bound_access_tokens: false,
      },
      {
        client_id: 'mcp-client',
        client_secret: 'mcp-secret',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: 'jwt-authz',
        client_secret: 'introspection-secret',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: 'jwt-authz-post',
        client_secret: 'introspection-secret',
        token_endpoint_auth_method: 'client_secret_post',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: 'mtls-client',
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: MTLS_SUBJECT_DN,
        tls_client_certificate_bound_access_tokens: true,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'tls_client_auth'],
    extraTokenClaims: (ctx, token) => (token.aud === OPAQUE_RESOURCE || token.resourceServer?.audience === OPAQUE_RESOURCE
      ? { sub: token.clientId }
      : undefined),
    // Every kind of proof key the test kit has (its fixtures are P-256, P-384, RSA and
    // Ed25519), not only oidc-provider's default ES256 and EdDSA.
    enabledJWA: {
      dPoPSigningAlgValues: ['ES256', 'ES384', 'RS256', 'PS256', 'Ed25519', 'EdDSA'],
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        allowedPolicy: (ctx, client) => INTROSPECTORS.has(client.clientId),
      },
      revocation: {
        enabled: true,
        allowedPolicy: (ctx, client, token) => token.clientId === client.clientId,
      },
      dPoP: {
        enabled: true,
        nonceSecret: requireDpopNonce ? crypto.randomBytes(32) : undefined,
        requireNonce: () => requireDpopNonce,
      },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        getCertificate: clientCertificate,
        // The header stands for a certificate the TLS terminator verified (see above).
        certificateAuthorized: (ctx) => clientCertificate(ctx) !== undefined,
        certificateSubjectMatches: (ctx, property, expected) => {
          const pem = clientCertificate(ctx);
          return property === 'tls_client_auth_subject_dn'
            && pem !== undefined
            && subjectDn(pem) === expected;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator, client) => {
          if (mcpResource !== undefined && resourceIndicator === mcpResource) {
            return {
              audience: mcpResource,
              // The MCP test client may hold the tools scopes, never the admin one.
              scope: client?.clientId === 'mcp-client' ? 'mcp mcp:tools' : MCP_SCOPES,
              accessTokenTTL: 600,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256' } },
            };
          }
          if (resourceIndicator === OPAQUE_RESOURCE) {
            return {
              audience: OPAQUE_RESOURCE,
              scope: RESOURCE_SCOPES,
              accessTokenTTL: 600,
              accessTokenFormat: 'opaque',
            };
          }
          if (resourceIndicator !== RESOURCE) {
            throw new errors.InvalidTarget();
          }
          return {
            audience: RESOURCE,
            scope: RESOURCE_SCOPES,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });

  // oidc-provider logs each failed request; keep that on stderr for a failing test to show.
  provider.on('server_error', (ctx, error) => console.error('server_error', error));
  provider.on('grant.error', (ctx, error) => {
    console.error('grant.error', error.message, error.error_description ?? '', error.error_detail ?? '');
  });

  server.on('request', provider.callback());
  console.log(`listening ${issuer}`);
});

// Exit with the test that started us: it holds our standard input open.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
