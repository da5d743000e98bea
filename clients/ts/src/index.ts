// A typed client of a Silo tenant's API. The types are generated from the
// committed OpenAPI document (src/schema.d.ts, `npm run generate`), so a path,
// body or answer the server does not describe fails to compile. Requests go
// through openapi-fetch; this file adds only what every caller needs: the
// tenant's base URL, the credential, and Silo's problem answers as errors.
import createClient, { type Client, type Middleware } from 'openapi-fetch';

import type { components, paths } from './schema.js';

export type { components, paths };
export type Problem = components['schemas']['Problem'];
export type Record = components['schemas']['Record'];

export interface SiloClientOptions {
  // The server, e.g. "https://127.0.0.1:8443".
  server: string;
  // The tenant's slug: requests go to <server>/t/<tenant>/api/...
  tenant: string;
  // An API token (POST /api/tokens). A browser on the tenant's own origin
  // uses its session cookie instead and passes csrfToken.
  token?: string;
  // The session's CSRF token (from sign-in or GET /api/auth/me), sent on
  // unsafe requests.
  csrfToken?: string;
  fetch?: typeof globalThis.fetch;
}

const kUnsafe = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

// A refusal or failure: the server's problem, with its request id.
export class SiloError extends Error {
  readonly status: number;
  readonly problem: Problem | undefined;
  constructor(status: number, problem: Problem | undefined) {
    super(problem ? `${status} ${problem.title}: ${problem.detail}` : `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function createSiloClient(options: SiloClientOptions): Client<paths> {
  const client = createClient<paths>({
    baseUrl: `${options.server.replace(/\/$/, '')}/t/${encodeURIComponent(options.tenant)}`,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const auth: Middleware = {
    onRequest({ request }) {
      if (options.token) request.headers.set('Authorization', `Bearer ${options.token}`);
      if (options.csrfToken && kUnsafe.has(request.method)) {
        request.headers.set('X-CSRF-Token', options.csrfToken);
      }
      return request;
    },
  };
  client.use(auth);
  return client;
}

// The data of an openapi-fetch answer, or a SiloError carrying the problem.
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.response.ok && result.error === undefined) return result.data as T;
  throw new SiloError(result.response.status, result.error as Problem | undefined);
}
