// CORS in a real browser (issue 20): a page served from another origin
// (http://127.0.0.1:<port>, a plain Node server this test starts) calls the
// tenant API with an API token. The browser's own CORS machinery decides:
// a preflighted JSON write and a read succeed once the tenant lists the
// origin, fail while it does not, and a credentialed (cookie) fetch never
// succeeds, listed or not.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { context, launch } from './lib/browser.mjs';
import { startSilo } from './lib/silo.mjs';

let silo, browser, app, appOrigin, token;
const expires = new Date(Date.now() + 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');

async function operator(method, path, body) {
  const res = await fetch(silo.operatorUrl + path, {
    method,
    headers: { Authorization: 'Bearer ' + silo.operatorToken(), 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.ok(res.ok, `${path}: ${res.status}`);
  return res.json();
}

// Sets the tenant's cors_origins through the API (settings.manage).
async function listOrigins(origins) {
  const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
  const status = await page.request.patch(silo.url + '/t/acme/api/settings', {
    headers: { Authorization: 'Bearer ' + token },
    data: { cors_origins: origins },
  });
  assert.equal(status.status(), 200);
  await page.context().close();
}

before(async () => {
  silo = await startSilo();
  await operator('POST', '/v1/tenants', { slug: 'acme', name: 'Acme', owner_email: 'owner@acme.test' });
  ({ token } = await operator('POST', '/v1/tenants/acme/tokens', {
    name: 'front-end',
    permissions: ['settings.manage', 'collections.read', 'collections.manage', 'records.*.read',
      'records.*.create'],
    expires_at: expires,
  }));
  app = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>app</title><p>another origin</p>');
  });
  await new Promise((r) => app.listen(0, '127.0.0.1', r));
  appOrigin = 'http://127.0.0.1:' + app.address().port;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (app ? app.close(r) : r()));
  await silo?.stop();
});

// Runs fetches from the app's page: each answers {status, body} or {error}.
async function fromApp(calls) {
  const ctx = await context(browser);
  const page = await ctx.newPage();
  await page.goto(appOrigin + '/');
  const out = await page.evaluate(async (calls) => {
    const results = [];
    for (const c of calls) {
      try {
        const res = await fetch(c.url, c.init);
        results.push({ status: res.status, body: await res.text(), etag: res.headers.get('ETag') });
      } catch (e) {
        results.push({ error: String(e) });
      }
    }
    return results;
  }, calls);
  await ctx.close();
  return out;
}

test('a listed origin calls the API with a token; an unlisted one cannot', async () => {
  const api = silo.url + '/t/acme/api';
  const auth = { Authorization: 'Bearer ' + token };
  const calls = [
    { url: api + '/collections', init: { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'notes', fields: [{ name: 't', type: 'string' }] }) } },
    { url: api + '/collections/notes/records', init: { method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ t: 'from the app' }) } },
    { url: api + '/collections/notes/records', init: { headers: auth } },
  ];

  // Not listed: the browser refuses every call (the preflight is refused).
  const refused = await fromApp(calls);
  for (const r of refused) assert.match(r.error ?? '', /Failed to fetch/, JSON.stringify(r));

  await listOrigins([appOrigin]);
  const [made, record, list] = await fromApp(calls);
  assert.equal(made.status, 201, JSON.stringify(made));
  assert.equal(record.status, 201);
  assert.equal(record.etag, '"1"');  // an exposed header
  assert.equal(list.status, 200);
  assert.deepEqual(JSON.parse(list.body).items.map((r) => r.t), ['from the app']);

  // Taken off the list: refused again at once.
  await listOrigins([]);
  const again = await fromApp([calls[2]]);
  assert.match(again[0].error ?? '', /Failed to fetch/);
});

test('a credentialed fetch from another origin never succeeds', async () => {
  await listOrigins([appOrigin]);
  const [me] = await fromApp([
    { url: silo.url + '/t/acme/api/auth/me', init: { credentials: 'include' } },
  ]);
  assert.match(me.error ?? '', /Failed to fetch/, JSON.stringify(me));
});
