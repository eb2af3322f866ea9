// Express 4 upstream for the path differential test (see ../README.md).
// Express's own router (app.all with path patterns; defaults: case-insensitive,
// non-strict trailing slash) behind method-override set up as its README shows.
// Usage: node app.js PORT
'use strict';

const express = require('express');
const methodOverride = require('method-override');

const SERVER = 'express';
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node app.js PORT');
  process.exit(2);
}

const app = express();
app.disable('x-powered-by');

// method-override's README: each getter overrides POST requests only (its default).
app.use(methodOverride('X-HTTP-Method')); //          Microsoft
app.use(methodOverride('X-HTTP-Method-Override')); // Google/GData
app.use(methodOverride('X-Method-Override')); //      IBM
app.use(methodOverride('_method')); //                ?_method=DELETE

function answer(route) {
  return (req, res) => {
    res.status(200).json({ route, method: req.method.toUpperCase(), server: SERVER });
  };
}

for (const [prefix, route] of [
  ['/api/public', 'public'],
  ['/api/private-scoped', 'private-scoped'],
  ['/api/private', 'private'],
  ['/admin', 'admin'],
  ['/internal', 'internal'],
]) {
  app.all([prefix, `${prefix}/*`], answer(route));
}
app.all('/api/items/:id', answer('items'));
app.all('*', answer('other'));

const server = app.listen(port, '127.0.0.1', () => {
  process.stdout.write('ready\n');
});
server.on('error', (err) => {
  console.error(err);
  process.exit(1);
});
