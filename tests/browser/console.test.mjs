// The web console in a real browser (issue 20): Debian's chromium driven by
// playwright-core against a real `silo serve`. Every screen state is checked
// with axe-core (WCAG 2.2 A and AA, all impacts) in light and dark, every
// page for CSP and Trusted Types violations, and a screenshot of each state
// is saved under build/console-shots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'playwright-core';
import { startSilo, totp } from './lib/silo.mjs';
import { launch, context, axe, screenshot } from './lib/browser.mjs';

const OWNER = 'owner@acme.test';
const PASSWORD = 'plum tree over the river';
let silo, browser, console_, api;
const problems = [];
let secret = '';
let recoveryCodes = [];

before(async () => {
  silo = await startSilo();
  browser = await launch();
  console.log('browser', browser.version());
  const made = JSON.parse(silo.cli('--json', 'tenant', 'create', 'acme', '--owner-email', OWNER));
  api = await request.newContext({ ignoreHTTPSErrors: true, baseURL: silo.url });
  const setup = await api.post('/t/acme/api/auth/setup', {
    data: { token: made.owner_setup_token, password: PASSWORD },
  });
  assert.equal(setup.status(), 200, await setup.text());
  console_ = silo.url + '/t/acme/console/';
});

after(async () => {
  await api?.dispose();
  await browser?.close();
  await silo?.stop();
});

// axe in both colour schemes and a screenshot of each, for one state.
async function check(page, state) {
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    assert.deepEqual(await axe(page), [], `${state} (${scheme})`);
    await screenshot(page, `${state}-${scheme}`);
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

async function noStorage(page) {
  const kept = await page.evaluate(() => ({
    local: Object.keys(localStorage),
    session: Object.keys(sessionStorage),
  }));
  assert.deepEqual(kept, { local: [], session: [] });
}

test('the owner signs in, enrols a second factor, keeps the session over a reload, signs out', async () => {
  const ctx = await context(browser, { problems });
  const page = await ctx.newPage();
  await page.goto(console_);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await check(page, 'sign-in');

  await page.getByLabel('E-mail').fill(OWNER);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').innerText(), /invalid e-mail or password/);
  await check(page, 'sign-in-refused');

  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Set up a second factor' }).waitFor();
  await page.getByRole('img', { name: 'QR code for your authenticator app' }).waitFor();
  assert.match(await page.getByRole('img').getAttribute('src'), /^blob:/);
  secret = (await page.locator('code.secret').innerText()).replace(/\s/g, '');
  assert.match(secret, /^[A-Z2-7]{16,}$/);
  await check(page, 'totp-enrol');

  await page.getByLabel('Code from your authenticator app').fill('000000');
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.getByRole('alert').waitFor();
  await page.getByLabel('Code from your authenticator app').fill(totp(secret));
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.getByRole('heading', { name: 'Your recovery codes' }).waitFor();
  recoveryCodes = await page.locator('ul.codes code').allInnerTexts();
  assert.ok(recoveryCodes.length >= 8, recoveryCodes.join());
  await check(page, 'recovery-codes');
  await page.getByRole('button', { name: 'I have stored them' }).click();

  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await page.getByRole('cell', { name: 'this device' }).waitFor();
  await check(page, 'account');
  await noStorage(page);
  const [cookie] = (await ctx.cookies()).filter((c) => c.name === '__Host-silo_session');
  assert.ok(cookie && cookie.httpOnly && cookie.secure && cookie.sameSite === 'Strict');

  // A reload keeps the session, and the console can still write (the CSRF
  // token came back from /api/auth/me): signing out is a write.
  await page.reload();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await noStorage(page);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.match(await page.getByRole('status').innerText(), /You signed out/);
  assert.deepEqual((await ctx.cookies()).filter((c) => c.name === '__Host-silo_session'), []);
  const me = await page.evaluate(async (u) => (await fetch(u)).status, console_.replace('console/', 'api/auth/me'));
  assert.equal(me, 401);
  await ctx.close();
  assert.deepEqual(problems, []);
});

test('keyboard only: a second browser signs in with a recovery code; the first ends its session', async () => {
  assert.ok(secret && recoveryCodes.length, 'runs after the enrolment test');
  const first = await context(browser, { problems });
  const a = await first.newPage();
  await a.goto(console_);
  await a.getByLabel('E-mail').fill(OWNER);
  await a.getByLabel('Password').fill(PASSWORD);
  await a.getByRole('button', { name: 'Sign in' }).click();
  await a.getByRole('heading', { name: 'Second factor' }).waitFor();
  await check(a, 'second-factor');
  // One step ahead of now: the step used at enrolment is never accepted again.
  await a.getByLabel('Code from your authenticator app').fill(totp(secret, Date.now() / 1000 + 30));
  await a.getByRole('button', { name: 'Continue' }).click();
  await a.getByRole('heading', { name: 'Your account' }).waitFor();

  const second = await context(browser, { problems });
  const b = await second.newPage();
  await b.goto(console_);
  await b.getByRole('heading', { name: 'Sign in' }).waitFor();
  const focusOn = async (page, want) => {
    for (let i = 0; i < 12; i++) {
      await page.keyboard.press('Tab');
      const here = await page.evaluate(() => {
        const el = document.activeElement;
        const ring = el ? getComputedStyle(el).outlineStyle : 'none';
        return { id: el?.id ?? '', text: el?.textContent?.trim() ?? '', ring };
      });
      if (here.id === want || here.text === want) {
        assert.notEqual(here.ring, 'none', `${want} shows where the focus is`);
        return;
      }
    }
    assert.fail('the keyboard never reached ' + want);
  };
  await focusOn(b, 'email');
  await b.keyboard.type(OWNER);
  await focusOn(b, 'password');
  await b.keyboard.type(PASSWORD);
  await b.keyboard.press('Enter');
  await b.getByRole('heading', { name: 'Second factor' }).waitFor();
  await focusOn(b, 'Use a recovery code instead');
  await b.keyboard.press('Enter');
  await b.getByLabel('Recovery code').waitFor();
  await check(b, 'second-factor-recovery');
  await focusOn(b, 'code');
  await b.keyboard.type(recoveryCodes[0]);
  await b.keyboard.press('Enter');
  await b.getByRole('heading', { name: 'Your account' }).waitFor();
  await noStorage(b);

  // The first browser sees two sessions and ends the other one.
  await a.reload();
  await a.getByRole('button', { name: 'End every other session' }).waitFor();
  assert.equal(await a.locator('tbody tr').count(), 2);
  await a.getByRole('button', { name: 'End every other session' }).click();
  await a.getByRole('button', { name: 'End every other session' }).waitFor({ state: 'detached' });
  assert.equal(await a.locator('tbody tr').count(), 1);
  await b.reload();
  await b.getByRole('heading', { name: 'Sign in' }).waitFor();
  await first.close();
  await second.close();
  assert.deepEqual(problems, []);
});

test('the reset link opens the console with its token, which never reaches the server', async () => {
  const ctx = await context(browser, { problems });
  const page = await ctx.newPage();
  const asked = [];
  page.on('request', (r) => asked.push(r.url()));
  await page.goto(silo.url + '/t/acme/reset#token=not-a-real-token');
  await page.getByRole('heading', { name: 'Choose a new password' }).waitFor();
  assert.equal(new URL(page.url()).hash, '');  // taken out of the address bar
  await page.getByLabel('New password').fill('a long enough new password');
  await page.getByRole('button', { name: 'Set the password' }).click();
  await page.getByRole('alert').waitFor();
  await check(page, 'reset-refused');
  assert.ok(asked.every((u) => !u.includes('not-a-real-token')), asked.join('\n'));
  assert.ok(!silo.log().includes('not-a-real-token'));
  await ctx.close();
  assert.deepEqual(problems, []);
});
