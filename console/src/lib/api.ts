// The console's one door to Silo's API. Same origin only; the tenant's base
// path is everything before /console/ in the page's address ("/t/acme" on
// path routing, "" on a tenant's own host). The CSRF token lives in this
// module's memory only (never in Web Storage): after a reload it comes back
// from GET /api/auth/me. Errors are ApiError with the server's problem+json
// detail, its field errors and its request id.

export class ApiError extends Error {
  readonly status: number;
  readonly fields: Record<string, string>;
  readonly requestId: string;
  // The action needs a fresh proof of identity (POST /api/auth/step-up).
  readonly stepUp: boolean;
  constructor(
    status: number,
    detail: string,
    fields: Record<string, string>,
    requestId: string,
    stepUp = false,
  ) {
    super(detail);
    this.status = status;
    this.fields = fields;
    this.requestId = requestId;
    this.stepUp = stepUp;
  }
}

export const basePath: string = location.pathname.replace(/\/console(\/.*)?$/, '');

let csrfToken: string | null = null;

export function setCsrf(token: string | null): void {
  csrfToken = token;
}

// `body` is sent as JSON, or as it is when it is a Blob (a file: its type
// goes in Content-Type unless `extra` names one).
export async function call<T>(
  method: string,
  path: string,
  body?: unknown,
  extra: Record<string, string> = {},
): Promise<T> {
  const raw = body instanceof Blob;
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (raw) headers['Content-Type'] = body.type || 'application/octet-stream';
  else if (body !== undefined) headers['Content-Type'] = 'application/json';
  Object.assign(headers, extra);
  if (method !== 'GET' && csrfToken !== null) headers['X-CSRF-Token'] = csrfToken;
  let res: Response;
  try {
    res = await fetch(basePath + path, {
      method,
      headers,
      body: raw ? body : body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'The server could not be reached.', {}, '');
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const p = (json ?? {}) as {
      detail?: string;
      title?: string;
      request_id?: string;
      errors?: { field: string; message: string }[];
      step_up_required?: boolean;
    };
    const fields: Record<string, string> = {};
    for (const e of p.errors ?? []) fields[e.field] = e.message;
    throw new ApiError(
      res.status,
      p.detail ?? p.title ?? `HTTP ${res.status}`,
      fields,
      p.request_id ?? res.headers.get('X-Request-Id') ?? '',
      p.step_up_required === true,
    );
  }
  return json as T;
}

// Uploads a file for a file field (POST /api/files: the body is the file);
// its id goes into the record's field.
export interface FileInfo {
  id: string;
  size: number;
  sha256: string;
  type: string;
  name: string;
}

export function upload(collection: string, field: string, file: File): Promise<FileInfo> {
  const q = new URLSearchParams({ collection, field, name: file.name });
  return call<FileInfo>('POST', `/api/files?${q}`, file);
}

export interface User {
  id: string;
  email: string;
  status: string;
  roles: string[];
  totp_enabled: boolean;
}

export interface Me {
  user: User;
  permissions: string[];
  mfa_enrolment_required: boolean;
  csrf_token?: string;
}

export interface SignedIn {
  user: User;
  mfa_enrolment_required: boolean;
  csrf_token: string;
}

export interface MfaChallenge {
  mfa_required: true;
  mfa_token: string;
}
