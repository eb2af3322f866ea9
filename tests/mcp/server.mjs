// An MCP server built with the official MCP TypeScript SDK, for the jwt-authz end-to-end
// test: stateless Streamable HTTP at POST /mcp, with the tools `search` and `admin_reset`.
// It trusts the proxy in front of it (jwt-authz behind Envoy) for authorization, and
// records the Mcp-Method and Mcp-Name headers of every POST it answers.
//
// Usage: node tests/mcp/server.mjs  (port 0: a free one)
// Prints `listening <port>` once it accepts connections; exits when stdin closes.

import express from 'express';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

function server() {
  const mcp = new McpServer({ name: 'jwt-authz-test', version: '1.0.0' });
  mcp.tool('search', 'Search the catalogue', { query: z.string().optional() }, async ({ query }) => ({
    content: [{ type: 'text', text: `results for ${query ?? ''}` }],
  }));
  mcp.tool('admin_reset', 'Reset everything (administrators only)', {}, async () => ({
    content: [{ type: 'text', text: 'reset done' }],
  }));
  return mcp;
}

const app = express();
app.use(express.json());
const seen = [];
app.post('/mcp', async (req, res) => {
  seen.push({ method: req.get('mcp-method') ?? null, name: req.get('mcp-name') ?? null, body: req.body?.method ?? null });
  const mcp = server();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on('close', () => {
    transport.close();
    mcp.close();
  });
  await mcp.connect(transport);
  await transport.handleRequest(req, res, req.body);
});
app.get('/seen', (req, res) => res.json(seen));

const listener = app.listen(0, '127.0.0.1', () => {
  console.log(`listening ${listener.address().port}`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
