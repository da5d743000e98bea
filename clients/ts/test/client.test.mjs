// The generated client against a live `silo serve` (127.0.0.1, its own data
// directory, stopped at the end): a tenant and an API token from the
// operator API, then a collection, records, an edit with If-Match, the
// history, and a filtered listing, all through the typed client.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { startSilo } from '../../../tests/browser/lib/silo.mjs';
import { createSiloClient, SiloError, unwrap } from '../dist/index.js';

// The development certificate is self-signed; this process talks only to the
// server it started on 127.0.0.1.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

let silo;
let token;

async function operator(method, path, body) {
  const res = await fetch(silo.operatorUrl + path, {
    method,
    headers: { Authorization: 'Bearer ' + silo.operatorToken(), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

before(async () => {
  silo = await startSilo();
  await operator('POST', '/v1/tenants', { slug: 'acme', name: 'Acme', owner_email: 'owner@acme.test' });
  const expires = new Date(Date.now() + 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
  ({ token } = await operator('POST', '/v1/tenants/acme/tokens', {
    name: 'client-test',
    permissions: ['collections.read', 'collections.manage', 'records.*.read', 'records.*.create',
      'records.*.update', 'records.*.history'],
    expires_at: expires,
  }));
});

after(async () => {
  await silo?.stop();
});

test('create a collection, write, edit with If-Match, read the history, list with a filter', async () => {
  const api = createSiloClient({ server: silo.url, tenant: 'acme', token });
  const made = unwrap(await api.POST('/api/collections', {
    body: {
      name: 'tasks',
      fields: [
        { name: 'title', type: 'string', required: true },
        { name: 'state', type: 'enum', values: ['open', 'done'] },
      ],
    },
  }));
  assert.equal(made.name, 'tasks');
  assert.equal(made.fields.length, 2);

  const ids = [];
  for (const [title, state] of [['write the client', 'open'], ['lint the document', 'done'], ['ship', 'open']]) {
    const r = unwrap(await api.POST('/api/collections/{name}/records', {
      params: { path: { name: 'tasks' } },
      body: { title, state },
    }));
    assert.equal(r.version, 1);
    ids.push(r.id);
  }

  const edited = unwrap(await api.PATCH('/api/collections/{name}/records/{id}', {
    params: { path: { name: 'tasks', id: ids[0] }, header: { 'If-Match': '"1"' } },
    body: { state: 'done' },
  }));
  assert.equal(edited.version, 2);
  assert.equal(edited.state, 'done');

  // The same edit again names version 1: refused, and typed as a problem.
  const stale = await api.PATCH('/api/collections/{name}/records/{id}', {
    params: { path: { name: 'tasks', id: ids[0] }, header: { 'If-Match': '"1"' } },
    body: { state: 'open' },
  });
  assert.equal(stale.response.status, 412);
  assert.throws(() => unwrap(stale), (e) => e instanceof SiloError && e.problem?.status === 412);

  const history = unwrap(await api.GET('/api/collections/{name}/records/{id}/history', {
    params: { path: { name: 'tasks', id: ids[0] } },
  }));
  assert.deepEqual(history.items.map((h) => h.version), [1, 2]);
  assert.deepEqual(history.items[1].changes, { state: ['open', 'done'] });

  const done = unwrap(await api.GET('/api/collections/{name}/records', {
    params: { path: { name: 'tasks' }, query: { filter: ['state:eq:done'], sort: 'title' } },
  }));
  assert.deepEqual(done.items.map((r) => r.title), ['lint the document', 'write the client']);
  assert.equal(done.next_cursor, null);
});

test('a token without the permission is refused with a problem', async () => {
  const api = createSiloClient({ server: silo.url, tenant: 'acme', token });
  const res = await api.GET('/api/audit');
  assert.equal(res.response.status, 403);
  assert.equal(res.error?.status, 403);
  const bad = createSiloClient({ server: silo.url, tenant: 'acme', token: 'silo_not_a_token' });
  const refused = await bad.GET('/api/collections');
  assert.equal(refused.response.status, 401);
  assert.equal(refused.data, undefined);
});

test('the served document types the tenant\'s own collection', async () => {
  const api = createSiloClient({ server: silo.url, tenant: 'acme', token });
  const doc = unwrap(await api.GET('/api/openapi.json'));
  const schemas = doc.components.schemas;
  assert.deepEqual(schemas.RecordInput_tasks.required, ['title']);
  assert.deepEqual(schemas.RecordInput_tasks.properties.state.enum, ['open', 'done']);
  // Read, create and update are held; delete is not, so it is not offered.
  const one = doc.paths['/api/collections/tasks/records/{id}'];
  assert.ok(one.get && one.patch);
  assert.equal(one.delete, undefined);
});
