// Hash routes: the server serves one page, and what follows # never reaches
// a server or a log. "#/c/tickets/r/r1" → ["c", "tickets", "r", "r1"].
export function parts(hash: string): string[] {
  return hash
    .replace(/^#\/?/, '')
    .split('?')[0]
    .split('/')
    .filter((p) => p !== '')
    .map((p) => decodeURIComponent(p));
}

export function href(...segments: string[]): string {
  return '#/' + segments.map((s) => encodeURIComponent(s)).join('/');
}
