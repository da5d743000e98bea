// Compiled by `npm run build` with --noEmit semantics (tsconfig.types.json):
// the generated types refuse what the server does not describe.
import { createSiloClient } from '../src/index.js';

const api = createSiloClient({ server: 'https://127.0.0.1:8443', tenant: 'acme', token: 't' });

export async function wrong(): Promise<void> {
  // @ts-expect-error: no such path
  await api.GET('/api/does-not-exist');
  // @ts-expect-error: a collection needs its fields
  await api.POST('/api/collections', { body: { name: 'x' } });
  // @ts-expect-error: the record's path needs its id
  await api.GET('/api/collections/{name}/records/{id}', { params: { path: { name: 'x' } } });
}
