// Console figures (issue 20), in one run against a fresh `silo serve` on
// this machine, Debian's chromium under playwright-core beside it:
//   - bytes of the sign-in page's first load (HTML, JS, CSS as transferred,
//     gzip) and of the whole console (every file of console/dist gzipped)
//   - first contentful paint of the sign-in page in a cold context, against
//     the FCP of a page of plain text (security.txt) from the same server in
//     a cold context (TLS, a new renderer, one paint: the floor)
//   - the record list's time to interactive with RECORDS (10,000) records:
//     a click on the collection until its 50 rows are shown, against the
//     same page's own fetch of that listing (the API's part)
// Medians of RUNS (5). Usage: node bench/console_bench.mjs   (env: SILO_BIN,
// RUNS, RECORDS). Last line: RESULT key=value ...
import { gzipSync } from 'node:zlib';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startSilo, totp } from '../tests/browser/lib/silo.mjs';
import { launch, request } from '../tests/browser/lib/browser.mjs';

const RUNS = Number(process.env.RUNS ?? 5);
const RECORDS = Number(process.env.RECORDS ?? 10000);
const PASSWORD = 'plum tree over the river';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function distGzipBytes(dir) {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    total += statSync(p).isDirectory() ? distGzipBytes(p) : gzipSync(readFileSync(p), { level: 9 }).length;
  }
  return total;
}

const silo = await startSilo();
const browser = await launch();
try {
  // A tenant whose owner (TOTP through the API) made a user without MFA.
  const made = JSON.parse(silo.cli('--json', 'tenant', 'create', 'bench', '--owner-email', 'o@bench.test'));
  const api = await request.newContext({ ignoreHTTPSErrors: true, baseURL: silo.url + '/t/bench/' });
  const ok = async (res) => {
    if (!res.ok()) throw new Error(`${res.url()}: ${res.status()} ${await res.text()}`);
    return res.status() === 204 ? null : res.json();
  };
  await ok(await api.post('api/auth/setup', { data: { token: made.owner_setup_token, password: PASSWORD } }));
  let csrf = (await ok(await api.post('api/auth/login', { data: { email: 'o@bench.test', password: PASSWORD } }))).csrf_token;
  const enrol = await ok(await api.post('api/auth/totp/enroll', { headers: { 'X-CSRF-Token': csrf } }));
  csrf = (await ok(await api.post('api/auth/totp/confirm', { headers: { 'X-CSRF-Token': csrf }, data: { code: totp(enrol.secret) } }))).csrf_token;
  const h = { headers: { 'X-CSRF-Token': csrf } };
  await ok(await api.post('api/collections', { ...h, data: { name: 'tickets', fields: [
    { name: 'title', type: 'string' }, { name: 'status', type: 'string' }, { name: 'n', type: 'integer' }] } }));
  const inv = await ok(await api.post('api/users', { ...h, data: { email: 'u@bench.test', roles: ['editor'] } }));
  await ok(await api.post('api/auth/setup', { data: { token: inv.setup_token, password: PASSWORD } }));
  const started = Date.now();
  for (let i = 0; i < RECORDS; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, RECORDS - i) }, (_, k) =>
      api.post('api/collections/tickets/records', { ...h, data: { title: `ticket ${i + k}`, status: 'open', n: i + k } })
        .then(ok)));
  }
  console.error(`${RECORDS} records in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const consoleUrl = silo.url + '/t/bench/console/';
  const firstLoad = [], fcp = [], ready = [], floor = [], tti = [], fetchMs = [];
  for (let run = 0; run < RUNS; run++) {
    // A cold context each run: nothing cached, no session.
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    let bytes = 0;
    page.on('response', async (r) => {
      if (r.url().startsWith(consoleUrl)) bytes += Number((await r.allHeaders())['content-length'] ?? 0);
    });
    await page.goto(consoleUrl);
    // The first frame with the form, read inside the page (ms since navigation start).
    const shown = await page.waitForFunction(
      () => (document.querySelector('h1')?.textContent === 'Sign in' ? performance.now() : 0),
      null, { polling: 'raf' });
    ready.push(await shown.jsonValue());
    await page.waitForFunction(() => performance.getEntriesByName('first-contentful-paint').length === 1);
    fcp.push(await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0].startTime));
    firstLoad.push(bytes);
    // The floor: a cold context's first page from the same server, one line
    // of text (security.txt), no script.
    const bare = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
    const plain = await bare.newPage();
    await plain.goto(silo.url + '/.well-known/security.txt');
    await plain.waitForFunction(() => performance.getEntriesByName('first-contentful-paint').length === 1);
    floor.push(await plain.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0].startTime));
    await bare.close();

    await page.getByLabel('E-mail').fill('u@bench.test');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('link', { name: 'tickets' }).waitFor();
    // Clicked and timed inside the page (frames until the rows are there),
    // so the driver's own waits are not counted.
    tti.push(await page.evaluate(() => new Promise((done) => {
      const t0 = performance.now();
      document.querySelector('a[href="#/c/tickets"]').click();
      const poll = () => {
        if (document.querySelectorAll('tbody tr').length === 50) done(performance.now() - t0);
        else requestAnimationFrame(poll);
      };
      poll();
    })));
    fetchMs.push(await page.evaluate(async () => {
      const s = performance.now();
      await (await fetch('../api/collections/tickets/records?sort=-updated_at&limit=50', { cache: 'no-store' })).json();
      return performance.now() - s;
    }));
    await ctx.close();
  }
  const whole = distGzipBytes(resolve(import.meta.dirname, '..', 'console', 'dist'));
  const row = (f, v, b, goal) => console.log(`| ${f} | ${v} | ${b} | ${goal} |`);
  console.log(`| figure | median of ${RUNS} | baseline (same run) | goal |`);
  console.log('|---|---|---|---|');
  row('sign-in page first load (HTML + JS + CSS, gzip, as transferred)', `${(median(firstLoad) / 1024).toFixed(1)} KiB`, '', '<= 70 KB');
  row('whole console (console/dist, gzip)', `${(whole / 1024).toFixed(1)} KiB`, 'PocketBase ~260 KB + fonts', '<= 200 KB');
  row('sign-in page first contentful paint, cold', `${median(fcp).toFixed(0)} ms`, `security.txt, cold: ${median(floor).toFixed(0)} ms`, '<= 300 ms');
  row('sign-in form shown (from navigation start)', `${median(ready).toFixed(0)} ms`, '', '');
  row(`record list (${RECORDS} records) click to 50 rows shown`, `${median(tti).toFixed(0)} ms`, `its fetch alone: ${median(fetchMs).toFixed(1)} ms`, '<= 500 ms');
  console.log(`RESULT first_load_kib=${(median(firstLoad) / 1024).toFixed(1)} whole_kib=${(whole / 1024).toFixed(1)} fcp_ms=${median(fcp).toFixed(0)} fcp_floor_ms=${median(floor).toFixed(0)} signin_ready_ms=${median(ready).toFixed(0)} list_tti_ms=${median(tti).toFixed(0)} list_fetch_ms=${median(fetchMs).toFixed(1)}`);
  await api.dispose();
} finally {
  await browser.close();
  await silo.stop();
}
