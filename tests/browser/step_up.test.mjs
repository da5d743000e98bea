// Step-up in the console (issue 24, ASVS 4.3.3): once the sign-in is older
// than SILO_STEP_UP_MINUTES (1 here), ending the other sessions is refused
// with step_up_required; the console's problem box asks for the password, a
// wrong one is refused, the right one lets the repeated action through.
// The test waits 61 s of real time for the proof to age (nothing races it).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { context, launch, request } from './lib/browser.mjs';
import { startSilo, totp } from './lib/silo.mjs';

const OWNER = 'owner@acme.test';
const PASSWORD = 'plum tree over the river';
let silo, browser, api, secret;
const problems = [];

before(async () => {
  silo = await startSilo({ SILO_STEP_UP_MINUTES: '1' });
  browser = await launch();
  const made = JSON.parse(silo.cli('--json', 'tenant', 'create', 'acme', '--owner-email', OWNER));
  // The owner's first session (through the API) enrols the second factor;
  // it stays signed in: the "other" session the console will end.
  api = await request.newContext({ ignoreHTTPSErrors: true, baseURL: silo.url + '/t/acme/' });
  const ok = async (res) => {
    assert.ok(res.ok(), `${res.url()}: ${res.status()} ${await res.text()}`);
    return res.json();
  };
  await ok(await api.post('api/auth/setup', { data: { token: made.owner_setup_token, password: PASSWORD } }));
  let csrf = (await ok(await api.post('api/auth/login', { data: { email: OWNER, password: PASSWORD } }))).csrf_token;
  const enrol = await ok(await api.post('api/auth/totp/enroll', { headers: { 'X-CSRF-Token': csrf } }));
  secret = enrol.secret;
  await ok(await api.post('api/auth/totp/confirm', {
    headers: { 'X-CSRF-Token': csrf }, data: { code: totp(secret) },
  }));
});

after(async () => {
  await api?.dispose();
  await browser?.close();
  await silo?.stop();
});

test('an aged sign-in must prove itself again before ending other sessions', async () => {
  const ctx = await context(browser, { problems });
  const page = await ctx.newPage();
  await page.goto(silo.url + '/t/acme/console/');
  await page.getByLabel('E-mail').fill(OWNER);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Second factor' }).waitFor();
  // One step ahead: the enrolment's step is never accepted again.
  await page.getByLabel('Code from your authenticator app').fill(totp(secret, Date.now() / 1000 + 30));
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByRole('heading', { name: 'Collections' }).waitFor();
  await page.getByRole('link', { name: 'Account' }).click();
  const end = page.getByRole('button', { name: 'End every other session' });
  await end.waitFor();
  assert.equal(await page.locator('tbody tr').count(), 2);

  await new Promise((r) => setTimeout(r, 61_000));
  await end.click();
  const alert = page.getByRole('alert');
  await alert.getByRole('button', { name: 'Confirm it is you' }).waitFor();
  assert.equal(await page.locator('tbody tr').count(), 2, 'nothing was ended');
  assert.equal((await api.get('api/auth/me')).status(), 200);

  await alert.getByLabel('Your password').fill('not the password at all');
  await alert.getByRole('button', { name: 'Confirm it is you' }).click();
  await alert.getByText('wrong password or code').waitFor();
  assert.equal(await alert.getByText('Confirmed.').count(), 0);

  await alert.getByLabel('Your password').fill(PASSWORD);
  await alert.getByRole('button', { name: 'Confirm it is you' }).click();
  await alert.getByText('Confirmed. Repeat the action within a few minutes.').waitFor();
  await end.click();
  await end.waitFor({ state: 'detached' });
  assert.equal(await page.locator('tbody tr').count(), 1);
  assert.equal((await api.get('api/auth/me')).status(), 401);
  await ctx.close();
  assert.deepEqual(problems, []);
});
