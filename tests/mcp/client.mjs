// An MCP client built with the official MCP TypeScript SDK, doing what clients do against
// a protected MCP server: the first POST gets 401 with `resource_metadata`; the SDK reads
// the RFC 9728 document, takes the authorization server from it, gets a token for the
// resource (client_credentials, RFC 8707 `resource`) and retries. Then it lists the tools
// and calls each; a 403 `insufficient_scope` makes the SDK ask for the challenge's scope.
//
// The SDK (1.32.2) does not send the SEP-2243 headers yet: its fetch is wrapped to add
// `Mcp-Method` and `Mcp-Name` to every POST as the specification says (the method; the
// tool or prompt name, or the resource URI, Base64-wrapped when not plain ASCII).
//
// Usage: node tests/mcp/client.mjs <mcp url> <issuer> <client id> <client secret> <scope>
// (the SDK's client_credentials provider asks for `scope`, its client metadata, on every
// token request, upscoping included).
// Prints one JSON line per step: {"step": ..., "ok": bool, "detail": ...}.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const [url, issuer, clientId, clientSecret, scope] = process.argv.slice(2);

function headerValue(text) {
  const plain = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(text) && !text.startsWith('=?base64?');
  return plain ? text : `=?base64?${Buffer.from(text, 'utf8').toString('base64')}?=`;
}

// SEP-2243: mirror the JSON-RPC method and name into headers on every POST.
async function fetchWithMcpHeaders(input, init = {}) {
  if ((init.method ?? 'GET').toUpperCase() === 'POST' && typeof init.body === 'string') {
    const message = JSON.parse(init.body);
    if (!Array.isArray(message) && typeof message.method === 'string') {
      const headers = new Headers(init.headers);
      headers.set('Mcp-Method', message.method);
      const named = message.params?.name ?? message.params?.uri;
      if (typeof named === 'string') {
        headers.set('Mcp-Name', headerValue(named));
      }
      init = { ...init, headers };
    }
  }
  return fetch(input, init);
}

const seenStatuses = [];
async function recordingFetch(input, init) {
  const response = await fetchWithMcpHeaders(input, init);
  const sent = String(input).endsWith('/token') && init?.body ? String(init.body) : undefined;
  const granted = sent ? (await response.clone().json().catch(() => ({}))).scope ?? null : undefined;
  seenStatuses.push({ url: String(input), status: response.status, challenge: response.headers.get('www-authenticate'), sent, granted });
  return response;
}

function report(step, ok, detail) {
  console.log(JSON.stringify({ step, ok, detail }));
}

const authProvider = new ClientCredentialsProvider({ clientId, clientSecret, scope, expectedIssuer: issuer });
const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider, fetch: recordingFetch });
const client = new Client({ name: 'jwt-authz-test-client', version: '1.0.0' });
try {
  await client.connect(transport);
  report('connect', true, seenStatuses);
} catch (error) {
  report('connect', false, { error: `${error}`, responses: seenStatuses });
  process.exit(0);
}
try {
  const tools = await client.listTools();
  report('tools/list', true, tools.tools.map((t) => t.name).sort());
} catch (error) {
  report('tools/list', false, `${error}`);
}
for (const name of ['search', 'admin_reset']) {
  const before = seenStatuses.length;
  try {
    const result = await client.callTool({ name, arguments: name === 'search' ? { query: 'q' } : {} });
    report(`tools/call ${name}`, true, result.content?.[0]?.text ?? null);
  } catch (error) {
    report(`tools/call ${name}`, false, { error: `${error}`, responses: seenStatuses.slice(before) });
  }
}
await client.close().catch(() => {});
process.exit(0);
