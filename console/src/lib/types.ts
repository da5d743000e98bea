// The shapes of the API's answers that the console reads.
export interface FieldDef {
  name: string;
  type: string;
  required?: boolean;
  unique?: boolean;
  indexed?: boolean;
  max?: number;
  values?: string[];
  collection?: string;
  multiple?: boolean;
  on_delete?: string;
  max_bytes?: number;
  types?: string[];
  max_files?: number;
}

export interface Collection {
  name: string;
  fields: FieldDef[];
  version: number;
  created_at: string;
  updated_at: string;
}

export type RecordData = Record<string, unknown> & {
  id: string;
  version: number;
  created_at: string;
  created_by: string;
  updated_at: string;
  updated_by: string;
};

export interface HistoryItem {
  version: number;
  seq: number;
  at: string;
  type: string;
  actor: string;
  actor_name: string | null;
  request_id: string;
  changes: unknown;
}

export interface Change {
  field: string;
  old?: unknown;
  new?: unknown;
  changed?: boolean;
}

// A version's changes as rows, from either form the API uses: history's
// {"field": [old, new]} or the event log's [{field, old, new}]; a value the
// log does not show (a secret field) is only marked as changed.
export function changesOf(changes: unknown): Change[] {
  if (Array.isArray(changes)) return changes as Change[];
  if (changes === null || typeof changes !== 'object') return [];
  return Object.entries(changes as Record<string, unknown>).map(([field, v]) =>
    Array.isArray(v) && v.length === 2 ? { field, old: v[0], new: v[1] } : { field, changed: true },
  );
}

export const FIELD_TYPES = [
  'string', 'text', 'integer', 'number', 'boolean', 'datetime', 'email', 'enum', 'json',
  'relation', 'file',
];
export const SYSTEM_FIELDS = ['id', 'version', 'created_at', 'created_by', 'updated_at', 'updated_by'];

export function show(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

export function local(t: string): string {
  return new Date(t).toLocaleString();
}
