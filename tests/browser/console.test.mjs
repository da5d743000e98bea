// The web console in a real browser (issue 20): Debian's chromium driven by
// playwright-core against a real `silo serve`. Every screen state is checked
// with axe-core (WCAG 2.2 A and AA, all impacts) in light and dark, every
// page for CSP and Trusted Types violations, and a screenshot of each state
// is saved under build/console-shots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'playwright-core';
import { startSilo, totp } from './lib/silo.mjs';
import { startSmtp } from './lib/smtp.mjs';
import { launch, context, axe, screenshot } from './lib/browser.mjs';

const OWNER = 'owner@acme.test';
const EDITOR = 'ann@beta.test';
const PASSWORD = 'plum tree over the river';
const XSS = '<img src=x onerror="window.xssRan=1">';
let silo, smtp, browser, console_, api, betaOwner, ownerSetupToken;
const problems = [];
let secret = '';
let recoveryCodes = [];

before(async () => {
  // A real SMTP server for the reset mail.
  smtp = await startSmtp();
  silo = await startSilo({ SILO_SMTP_URL: smtp.url, SILO_SMTP_FROM: 'silo@acme.test',
    SILO_PUBLIC_URL: 'https://silo.example' });
  browser = await launch();
  console.log('browser', browser.version());
  // The owner of acme sets a password in the console (the first test).
  const made = JSON.parse(silo.cli('--json', 'tenant', 'create', 'acme', '--owner-email', OWNER));
  ownerSetupToken = made.owner_setup_token;
  api = await request.newContext({ ignoreHTTPSErrors: true, baseURL: silo.url });
  console_ = silo.url + '/t/acme/console/';

  // A second tenant whose owner (set up through the API, with a second
  // factor of its own) made a role without MFA and a user holding it: the
  // data screens' test signs in as that user with a password alone.
  const beta = JSON.parse(silo.cli('--json', 'tenant', 'create', 'beta', '--owner-email', OWNER));
  const b = await request.newContext({ ignoreHTTPSErrors: true, baseURL: silo.url + '/t/beta/' });
  const ok = async (res) => {
    assert.ok(res.ok(), `${res.url()}: ${res.status()} ${await res.text()}`);
    return res.status() === 204 ? null : res.json();
  };
  await ok(await b.post('api/auth/setup', { data: { token: beta.owner_setup_token, password: PASSWORD } }));
  let csrf = (await ok(await b.post('api/auth/login', { data: { email: OWNER, password: PASSWORD } }))).csrf_token;
  const enrol = await ok(await b.post('api/auth/totp/enroll', { headers: { 'X-CSRF-Token': csrf } }));
  csrf = (await ok(await b.post('api/auth/totp/confirm', {
    headers: { 'X-CSRF-Token': csrf }, data: { code: totp(enrol.secret) },
  }))).csrf_token;
  const h = { headers: { 'X-CSRF-Token': csrf } };
  await ok(await b.post('api/roles', { ...h, data: { name: 'writer', permissions: [
    'collections.read', 'collections.manage', 'users.read', 'records.*.read', 'records.*.create',
    'records.*.update', 'records.*.delete', 'records.*.history', 'settings.read',
    'settings.manage'] } }));
  const inv = await ok(await b.post('api/users', { ...h, data: { email: EDITOR, roles: ['writer'] } }));
  await ok(await b.post('api/auth/setup', { data: { token: inv.setup_token, password: PASSWORD } }));
  betaOwner = { api: b, csrf, ok };
});

after(async () => {
  await betaOwner?.api.dispose();
  await api?.dispose();
  await browser?.close();
  await silo?.stop();
  smtp?.stop();
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

// Tabs until `want` (an id or a button text) has the focus, which must be
// visible (an outline), or fails.
async function focusOn(page, want) {
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
}

async function noStorage(page) {
  const kept = await page.evaluate(() => ({
    local: Object.keys(localStorage),
    session: Object.keys(sessionStorage),
  }));
  assert.deepEqual(kept, { local: [], session: [] });
}

test('the owner sets a password with the setup link, signs in, enrols a second factor, keeps the session over a reload, signs out', async () => {
  const ctx = await context(browser, { problems });
  const page = await ctx.newPage();
  // The setup token travels in the fragment: no server sees it.
  const asked = [];
  page.on('request', (r) => asked.push(r.url()));
  await page.goto(console_ + '#setup=' + ownerSetupToken);
  await page.getByRole('heading', { name: 'Set up your account' }).waitFor();
  assert.equal(new URL(page.url()).hash, '');  // gone from the address bar
  assert.equal(await page.getByLabel('Setup token').inputValue(), ownerSetupToken);
  await page.getByLabel(/Choose a password/).fill('password1234');  // a common one
  await page.getByRole('button', { name: 'Set the password' }).click();
  await page.locator('#setup-password-err').waitFor();
  await check(page, 'setup-refused');
  await page.getByLabel(/Choose a password/).fill(PASSWORD);
  await page.getByRole('button', { name: 'Set the password' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.match(await page.getByRole('status').innerText(), /Your account is ready/);
  assert.ok(asked.every((u) => !u.includes(ownerSetupToken)), asked.join('\n'));
  assert.ok(!silo.log().includes(ownerSetupToken));
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

  await page.getByRole('heading', { name: 'Collections' }).waitFor();
  await page.getByRole('link', { name: 'Account' }).click();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await page.getByRole('cell', { name: 'this device' }).waitFor();
  await check(page, 'account');
  await noStorage(page);
  const [cookie] = (await ctx.cookies()).filter((c) => c.name === '__Host-silo_session_acme');
  assert.ok(cookie && cookie.httpOnly && cookie.secure && cookie.sameSite === 'Strict');

  // An API token: its secret shown once in a dialog, then only its name.
  await page.getByLabel('Token name').fill('ci');
  await page.getByLabel('collections.read', { exact: true }).check();
  await page.getByRole('button', { name: 'Create the token' }).click();
  const dialog = page.getByRole('dialog', { name: 'Your new token' });
  await dialog.waitFor();
  const tokenSecret = await dialog.locator('code.secret').innerText();
  assert.ok(tokenSecret.length >= 40, tokenSecret.length);
  await check(page, 'token-secret');
  await dialog.getByRole('button', { name: 'I have stored it' }).click();
  await page.getByRole('cell', { name: 'ci', exact: true }).waitFor();
  assert.ok(!(await page.content()).includes(tokenSecret));
  await page.getByRole('button', { name: 'Revoke the token ci' }).click();
  await page.getByRole('cell', { name: 'ci', exact: true }).waitFor({ state: 'detached' });

  // Users: invite (the setup token shown once), disable, enable, roles.
  await page.getByRole('link', { name: 'Users' }).click();
  await page.getByRole('heading', { name: 'Users' }).waitFor();
  await page.getByLabel('E-mail').fill('bob@acme.test');
  await page.getByLabel('viewer', { exact: true }).check();
  await page.getByRole('button', { name: 'Invite' }).click();
  await page.getByText('bob@acme.test is invited.').waitFor();
  const invitedToken = await page.locator('.notice code.secret').first().innerText();
  assert.equal(invitedToken.length, 43);
  // The link carries the token in its fragment, to the setup screen.
  assert.equal(await page.locator('.notice code.secret').nth(1).innerText(),
    console_ + '#setup=' + invitedToken);
  await check(page, 'users-invited');
  await page.getByRole('button', { name: 'Done' }).click();
  await page.getByRole('button', { name: 'Disable bob@acme.test' }).click();
  await page.getByRole('button', { name: 'Enable bob@acme.test' }).click();
  await page.getByRole('button', { name: 'Disable bob@acme.test' }).waitFor();
  await page.getByRole('button', { name: 'Change the roles of bob@acme.test' }).click();
  await page.getByRole('group', { name: 'Roles of bob@acme.test' }).getByLabel('editor', { exact: true }).check();
  await page.getByRole('button', { name: 'Save roles' }).click();
  await page.getByRole('cell', { name: 'editor, viewer' }).waitFor();

  // Roles: a new role, given a permission in the matrix and saved.
  await page.getByRole('link', { name: 'Roles' }).click();
  await page.getByRole('heading', { name: 'Roles' }).waitFor();
  assert.equal(await page.getByLabel('owner: users.manage', { exact: true }).isDisabled(), true);
  await page.getByLabel('Name', { exact: true }).fill('support');
  await page.getByRole('button', { name: 'Create the role' }).click();
  await page.getByText('Role support created.').waitFor();
  await page.getByLabel('support: collections.read', { exact: true }).check();
  await page.getByRole('button', { name: 'Save support' }).click();
  await page.getByText('Role support saved.').waitFor();
  await page.reload();
  await page.getByLabel('support: collections.read', { exact: true }).waitFor();
  assert.equal(await page.getByLabel('support: collections.read', { exact: true }).isChecked(), true);
  assert.equal(await page.getByLabel('support: users.read', { exact: true }).isChecked(), false);
  await check(page, 'roles');

  // The audit log names who did it; the chains verify; the event log.
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByRole('heading', { name: 'Audit and events' }).waitFor();
  await page.getByRole('cell', { name: 'user.invited' }).first().waitFor();
  assert.ok((await page.getByRole('cell', { name: OWNER, exact: true }).count()) > 0);
  await page.getByLabel('Type').fill('user.disabled');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByRole('cell', { name: 'user.invited' }).first().waitFor({ state: 'detached' });
  assert.deepEqual(await page.locator('tbody code.badge').allInnerTexts(), ['user.disabled']);
  await page.getByRole('button', { name: 'Verify now' }).click();
  const chains = page.locator('section.card [role=status]');
  await chains.filter({ hasText: 'Intact' }).waitFor();
  assert.match((await chains.innerText()).replace(/\s+/g, ' '), /Intact: \d+ events and \d+ audit entries/);
  await check(page, 'audit');
  await page.getByRole('button', { name: 'Event log' }).click();
  await page.getByRole('button', { name: 'Event log', pressed: true }).waitFor();
  await page.getByRole('cell', { name: 'user.disabled' }).waitFor({ state: 'detached' });
  assert.ok((await page.locator('tbody tr').count()) >= 1);
  await page.getByRole('link', { name: 'Account' }).click();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();

  // A reload keeps the session, and the console can still write (the CSRF
  // token came back from /api/auth/me): signing out is a write.
  await page.reload();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await noStorage(page);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.match(await page.getByRole('status').innerText(), /You signed out/);
  assert.deepEqual((await ctx.cookies()).filter((c) => c.name === '__Host-silo_session_acme'), []);
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
  await a.getByRole('heading', { name: 'Collections' }).waitFor();
  await a.getByRole('link', { name: 'Account' }).click();
  await a.getByRole('heading', { name: 'Your account' }).waitFor();

  const second = await context(browser, { problems });
  const b = await second.newPage();
  await b.goto(console_);
  await b.getByRole('heading', { name: 'Sign in' }).waitFor();
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
  await b.getByRole('heading', { name: 'Collections' }).waitFor();
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

  // The whole way: asked for on the sign-in page, the mail through real
  // SMTP, its link's token into the reset page, then a sign-in with the new
  // password (the owner's second factor is asked next: the password passed).
  const seen = smtp.messages.length;
  await page.goto(console_);
  await page.getByRole('button', { name: 'Forgot your password?' }).click();
  await page.getByRole('heading', { name: 'Reset your password' }).waitFor();
  await page.getByLabel('E-mail').fill(OWNER);
  await page.getByRole('button', { name: 'Send a reset mail' }).click();
  await page.getByText('If the address belongs to an account, a reset mail is on its way.').waitFor();
  await check(page, 'reset-requested');
  const mail = await smtp.next(OWNER, seen);
  const token = /Reset code: (\S+)/.exec(mail.body)[1];
  assert.ok(mail.body.includes('https://silo.example/t/acme/reset#token=' + token));
  await page.goto(silo.url + '/t/acme/reset#token=' + token);
  await page.getByLabel('New password').fill('a new long passphrase');
  await page.getByRole('button', { name: 'Set the password' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('E-mail').fill(OWNER);
  await page.getByLabel('Password').fill('a new long passphrase');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Second factor' }).waitFor();
  assert.ok(!silo.log().includes(token));
  await ctx.close();
  assert.deepEqual(problems, []);
});

test('collections and records: define, refuse on the field, create, edit, conflict, history, revert, as of, delete', async () => {
  const ctx = await context(browser, { problems });
  const page = await ctx.newPage();
  await page.goto(silo.url + '/t/beta/console/');
  await page.getByLabel('E-mail').fill(EDITOR);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Collections' }).waitFor();
  await page.getByText('No collections yet.').waitFor();
  await check(page, 'collections-empty');

  // A refusal is shown on the field it names.
  await page.getByLabel('Name', { exact: true }).fill('tickets');
  await page.getByLabel('Name of field 1').fill('Bad Name');
  await page.getByRole('button', { name: 'Create the collection' }).click();
  await page.locator('.field-error').first().waitFor();
  assert.equal(await page.getByLabel('Name of field 1').getAttribute('aria-invalid'), 'true');
  await check(page, 'collection-refused');
  await page.getByLabel('Name of field 1').fill('title');
  await page.getByLabel('Required').check();
  await page.getByRole('button', { name: 'Add a field' }).click();
  await page.getByLabel('Name of field 2').fill('status');
  await page.getByLabel('Type of field 2').selectOption('enum');
  await page.getByLabel('Values of field 2 (comma-separated)').fill('open, closed');
  await page.getByLabel('Values of field 2 (comma-separated)').blur();
  await page.getByRole('button', { name: 'Create the collection' }).click();
  await page.getByRole('heading', { name: 'tickets', exact: true }).waitFor();
  await page.getByText('No records.').waitFor();
  await check(page, 'records-empty');

  // A required field left empty is refused on that field.
  await page.getByRole('link', { name: 'New record' }).click();
  await page.getByRole('heading', { name: 'New record in tickets' }).waitFor();
  await page.getByLabel('Id (optional)').fill('t1');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.locator('#err-title').waitFor();
  await check(page, 'record-refused');
  await page.getByLabel('title (required)').fill('first');
  await page.getByLabel('status').selectOption('open');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Record t1' }).waitFor();
  await page.locator('p.small', { hasText: 'Version 1,' }).waitFor();

  await page.getByLabel('title (required)').fill('second');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Saved as version 2.').waitFor();
  await check(page, 'record');

  // Someone else changes it meanwhile: saving is refused with what changed,
  // never overwritten unseen; then overwritten on purpose.
  const status = await page.evaluate(async ([base, xss]) => {
    const me = await (await fetch(base + 'api/auth/me')).json();
    const r = await fetch(base + 'api/collections/tickets/records/t1', {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token, 'If-Match': '"2"' },
      body: JSON.stringify({ title: xss }),
    });
    return r.status;
  }, [silo.url + '/t/beta/', XSS]);
  assert.equal(status, 200);
  await page.getByLabel('title (required)').fill('mine');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('This record changed since you opened it').waitFor();
  await check(page, 'record-conflict');
  await page.getByRole('button', { name: 'Overwrite' }).click();
  await page.getByText('Saved as version 4.').waitFor();

  // The history names who changed what; version 1 comes back as version 5.
  await page.getByText(`by ${EDITOR}`).first().waitFor();
  assert.equal(await page.locator('ol.history > li').count(), 4);
  // Each version's changes, before and after (the newest first).
  const newest = page.locator('ol.history > li').first();
  // Their title is markup (ASVS 5.3.3): shown as text, never an element, and
  // no script of it runs (the context records any CSP violation as a problem).
  assert.deepEqual(await newest.getByRole('row').nth(1).getByRole('cell').allInnerTexts(),
    ['title', XSS, 'mine']);
  assert.equal(await page.locator('ol.history img').count(), 0);
  assert.equal(await page.evaluate(() => window.xssRan), undefined);
  await page.getByRole('button', { name: 'Restore version 1', exact: true }).click();
  await page.getByRole('button', { name: 'Yes, restore version 1' }).click();
  await page.getByText('Version 1 restored as version 5.').waitFor();
  assert.equal(await page.getByLabel('title (required)').inputValue(), 'first');
  // A version against the current record (read as of that version's time).
  await page.getByRole('button', { name: 'Compare version 3 with the current one' }).click();
  const against = page.getByRole('table', { name: 'Version 3 against the current one' });
  await against.waitFor();
  assert.deepEqual(await against.getByRole('row').nth(1).getByRole('cell').allInnerTexts(),
    ['title', XSS, 'first']);
  await check(page, 'record-history');
  // The same form by keyboard alone: from the page's heading (where a route
  // puts the focus) to the field, a new value, Enter saves.
  await page.locator('h1').focus();
  await focusOn(page, 'f-title');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('keyed');
  await page.keyboard.press('Enter');
  await page.getByText('Saved as version 6.').waitFor();
  assert.equal(await page.getByLabel('title (required)').inputValue(), 'keyed');
  await page.locator('p.small', { hasText: `Version 6, last changed` }).filter({ hasText: `by ${EDITOR}` }).waitFor();

  // The list: sorted, filtered, and as of before the record existed.
  await page.getByRole('link', { name: 'tickets' }).click();
  await page.getByRole('cell', { name: 't1' }).waitFor();
  await page.getByRole('button', { name: 'title' }).click();
  assert.equal(await page.getByRole('columnheader', { name: 'title' }).getAttribute('aria-sort'), 'ascending');
  await page.getByLabel('Filter').fill('title:eq:nothing');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText('No records match the filter.').waitFor();
  await page.getByLabel('Filter').fill('');
  await page.getByLabel('As of').fill('2020-01-01T00:00:00');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText(/Viewing as of .* \(read-only\)/).waitFor();
  assert.equal(await page.getByRole('link', { name: 'New record' }).count(), 0);
  await check(page, 'records-as-of');
  await page.getByRole('button', { name: 'Back to now' }).click();
  // At a phone's width nothing runs off the side of the page.
  await page.setViewportSize({ width: 360, height: 740 });
  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.getByRole('cell', { name: 't1' }).waitFor();
  assert.ok(await overflow() <= 0, 'records list at 360 px');
  await check(page, 'records-phone');
  await page.getByRole('link', { name: 't1' }).click();
  await page.getByRole('heading', { name: 'Record t1' }).waitFor();
  await page.locator('ol.history > li').first().waitFor();
  assert.ok(await overflow() <= 0, 'record page at 360 px');
  // Nothing hidden that the page needs, nothing squeezed unreadable.
  assert.ok(await page.locator('ol.history th', { hasText: 'Before' }).first().isVisible());
  assert.ok((await page.locator('.who').boundingBox()).height < 40, 'the e-mail on one line');
  await check(page, 'record-phone');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.getByRole('button', { name: 'Delete this record' }).click();
  await page.getByRole('button', { name: 'Yes, delete it' }).click();
  await page.getByText('No records.').waitFor();
  await noStorage(page);
  await ctx.close();
  assert.deepEqual(problems, []);
});

// A 1x1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

test('files, relation pickers, a live list, and the tenant settings', async () => {
  const { api: owner, csrf, ok } = betaOwner;
  const h = { headers: { 'X-CSRF-Token': csrf } };
  await ok(await owner.post('api/collections', { ...h, data: { name: 'teams', fields: [
    { name: 'name', type: 'string' }] } }));
  await ok(await owner.post('api/collections/teams/records', { ...h, data: { id: 'red', name: 'Red' } }));
  await ok(await owner.post('api/collections/teams/records', { ...h, data: { id: 'blue', name: 'Blue' } }));
  await ok(await owner.post('api/collections', { ...h, data: { name: 'people', fields: [
    { name: 'name', type: 'string', required: true },
    { name: 'team', type: 'relation', collection: 'teams' },
    { name: 'photo', type: 'file', types: ['image/png'], max_bytes: 65536 }] } }));

  const ctx = await context(browser, { problems });
  const page = await ctx.newPage();
  await page.goto(silo.url + '/t/beta/console/');
  await page.getByLabel('E-mail').fill(EDITOR);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Collections' }).waitFor();

  // A record with a related team picked by name and an uploaded photo,
  // previewed before it is saved.
  await page.goto(silo.url + '/t/beta/console/#/c/people/new');
  await page.getByRole('heading', { name: 'New record in people' }).waitFor();
  await page.getByLabel('Id (optional)').fill('p1');
  await page.getByLabel('name (required)').fill('Ada');
  await page.getByLabel('team').selectOption({ label: 'red: Red' });
  // A file of the wrong type is refused on its field.
  await page.getByLabel('photo').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
  await page.locator('#err-photo').waitFor();
  await page.getByLabel('photo').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: PNG });
  await page.getByRole('img', { name: 'Preview of dot.png' }).waitFor();
  assert.equal(await page.locator('#err-photo').count(), 0);
  await check(page, 'record-file-and-relation');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Record p1' }).waitFor();
  const link = page.getByRole('link', { name: /^[0-9a-f]{32}$/ });
  const file = await page.evaluate(async (u) => {
    const r = await fetch(u);
    return { status: r.status, type: r.headers.get('Content-Type'), size: (await r.arrayBuffer()).byteLength };
  }, await link.getAttribute('href'));
  assert.deepEqual(file, { status: 200, type: 'image/png', size: PNG.length });
  assert.equal(await page.getByLabel('team').inputValue(), 'red');

  // The schema, edited in place: a refused field is named on its row; a new
  // field and a file field's options are saved as the next version.
  await page.goto(silo.url + '/t/beta/console/#/c/people');
  await page.getByRole('button', { name: 'Edit the schema' }).click();
  await page.getByRole('heading', { name: 'Schema of people' }).waitFor();
  assert.equal(await page.getByLabel('Media types of field 3 (comma-separated; empty: any)').inputValue(), 'image/png');
  await page.getByRole('button', { name: 'Add a field' }).click();
  await page.getByLabel('Name of field 4').fill('Nick Name');
  await page.getByRole('button', { name: 'Save the schema' }).click();
  await page.locator('#ferr-3').waitFor();
  assert.equal(await page.getByLabel('Name of field 4').getAttribute('aria-invalid'), 'true');
  await check(page, 'schema-refused');
  await page.getByLabel('Name of field 4').fill('nickname');
  await page.getByLabel('Largest file of field 3 (bytes)').fill('131072');
  await page.getByLabel('Largest file of field 3 (bytes)').blur();
  await page.getByRole('button', { name: 'Save the schema' }).click();
  await page.getByText('Schema saved as version 2.').waitFor();
  const people = await ok(await owner.get('api/collections/people'));
  assert.deepEqual(people.fields.map((f) => f.name), ['name', 'team', 'photo', 'nickname']);
  assert.equal(people.fields[2].max_bytes, 131072);
  assert.deepEqual(people.fields[2].types, ['image/png']);

  // The list is live: a record made elsewhere appears without a reload.
  await page.goto(silo.url + '/t/beta/console/#/c/people');
  await page.getByRole('cell', { name: 'p1' }).waitFor();
  await page.getByText(/^Live: changes appear as they happen/).waitFor();
  await ok(await owner.post('api/collections/people/records', { ...h, data: { id: 'p2', name: 'Grace', team: 'blue' } }));
  await page.getByRole('cell', { name: 'p2' }).waitFor();
  await page.getByText('Live: changes appear as they happen (1 so far).').waitFor();
  await check(page, 'records-live');

  // Her password: a wrong current one is refused on its field; a change
  // keeps her signed in (a new session) and works for the next sign-in.
  await page.getByRole('link', { name: 'Account' }).click();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await page.getByLabel('Current password').fill('not my password at all');
  await page.getByLabel(/^New password/).fill('another long passphrase');
  await page.getByRole('button', { name: 'Change the password' }).click();
  await page.locator('#current-password-err').waitFor();
  await check(page, 'password-refused');
  // Each change is done when its form is cleared (only a success clears it).
  const cleared = () => page.waitForFunction(() => document.getElementById('current-password').value === '');
  await page.getByLabel('Current password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Change the password' }).click();
  await cleared();
  await page.getByText('Password changed. Every other session was ended.').waitFor();
  // Still signed in, and still able to write: back to the old password.
  await page.getByLabel('Current password').fill('another long passphrase');
  await page.getByLabel(/^New password/).fill(PASSWORD);
  await page.getByRole('button', { name: 'Change the password' }).click();
  await cleared();
  assert.equal(await page.locator('#current-password-err').count(), 0);

  // The tenant's CORS origins: a bad one refused on its line, then saved.
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  const origins = page.getByLabel(/Origins allowed to call the API/);
  await origins.fill('https://app.example.test\nftp://files.example.test');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText(/ftp:\/\/files.example.test: must start with https/).waitFor();
  assert.equal(await origins.getAttribute('aria-invalid'), 'true');
  await check(page, 'settings-refused');
  await origins.fill('https://app.example.test');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Saved: 1 origin may call the API with a token.').waitFor();
  await check(page, 'settings');
  assert.deepEqual((await ok(await owner.get('api/settings'))).cors_origins, ['https://app.example.test']);
  await noStorage(page);
  await ctx.close();
  assert.deepEqual(problems, []);
});

test('a real EventSource gets record events live, and none after its access is revoked', async () => {
  const { api: owner, csrf, ok } = betaOwner;
  const h = { headers: { 'X-CSRF-Token': csrf } };
  await ok(await owner.post('api/collections', { ...h, data: { name: 'notes', fields: [
    { name: 'text', type: 'string' }] } }));
  const ctx = await context(browser, { problems });
  const page = await ctx.newPage();
  await page.goto(silo.url + '/t/beta/console/');
  await page.getByLabel('E-mail').fill(EDITOR);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Collections' }).waitFor();
  // The page's own EventSource, under the console's CSP (connect-src 'self').
  await page.evaluate(() => {
    const es = new EventSource('../api/realtime/sse?channel=records:notes');
    globalThis.stream = { es, events: [] };
    es.onmessage = (m) => globalThis.stream.events.push(JSON.parse(m.data));
  });
  await page.waitForFunction(() => globalThis.stream.es.readyState === 1);
  await ok(await owner.post('api/collections/notes/records', { ...h, data: { id: 'n1', text: 'live' } }));
  await page.waitForFunction(() => globalThis.stream.events.length === 1);
  const [event] = await page.evaluate(() => globalThis.stream.events);
  assert.equal(event.type, 'event');
  assert.equal(event.channel, 'records:notes');
  assert.equal(event.data.record.text, 'live');

  // The role loses read: the session of its holder ends, the stream closes
  // for good (the reconnect is refused), and the next record never arrives.
  await ok(await owner.patch('api/roles/writer', { ...h, data: { permissions: ['collections.read'] } }));
  await page.waitForFunction(() => globalThis.stream.es.readyState === 2);
  await ok(await owner.post('api/collections/notes/records', { ...h, data: { id: 'n2', text: 'after' } }));
  await page.waitForTimeout(1000);
  assert.equal(await page.evaluate(() => globalThis.stream.events.length), 1);
  await ctx.close();
  assert.deepEqual(problems, []);
});

test('the operator asks for access; an owner approves it with a code and revokes it', async () => {
  // gamma: an owner whose second factor was set up through the API, so the
  // only TOTP step it has used is the enrolment's (the next one is free).
  const made = JSON.parse(silo.cli('--json', 'tenant', 'create', 'gamma', '--owner-email', OWNER));
  const g = await request.newContext({ ignoreHTTPSErrors: true, baseURL: silo.url + '/t/gamma/' });
  const { ok } = betaOwner;
  await ok(await g.post('api/auth/setup', { data: { token: made.owner_setup_token, password: PASSWORD } }));
  const csrf = (await ok(await g.post('api/auth/login', { data: { email: OWNER, password: PASSWORD } }))).csrf_token;
  const enrol = await ok(await g.post('api/auth/totp/enroll', { headers: { 'X-CSRF-Token': csrf } }));
  const confirmed = await ok(await g.post('api/auth/totp/confirm', {
    headers: { 'X-CSRF-Token': csrf }, data: { code: totp(enrol.secret) },
  }));
  await g.dispose();
  const asked = JSON.parse(silo.cli('--json', 'access', 'request', 'gamma', '--scope', 'records.*.read',
    '--reason', 'ticket 4711: a slow list', '--duration', '2h'));
  const state = () => JSON.parse(silo.cli('--json', 'access', 'show', 'gamma', asked.id)).state;

  const ctx = await context(browser, { problems });
  const page = await ctx.newPage();
  await page.goto(silo.url + '/t/gamma/console/');
  await page.getByLabel('E-mail').fill(OWNER);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Second factor' }).waitFor();
  await page.getByRole('button', { name: 'Use a recovery code instead' }).click();
  await page.getByLabel('Recovery code').fill(confirmed.recovery_codes[0]);
  await page.getByLabel('Recovery code').press('Enter');
  await page.getByRole('heading', { name: 'Collections' }).waitFor();
  await page.getByRole('link', { name: 'Operator access' }).click();
  await page.getByRole('heading', { name: 'Operator access' }).waitFor();
  await page.getByText('ticket 4711: a slow list').waitFor();
  await check(page, 'access-pending');

  // A wrong code is refused where it was typed; the request stays pending.
  const code = page.getByLabel(`Authenticator code for ${asked.id}`);
  await code.fill('000000');
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.getByText('a current TOTP code is needed').waitFor();
  assert.equal(state(), 'pending');
  await code.fill(totp(enrol.secret, Date.now() / 1000 + 30));
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.getByText(`Request ${asked.id} is approved.`).waitFor();
  assert.equal(state(), 'approved');
  await check(page, 'access-approved');
  await page.getByRole('button', { name: `Revoke ${asked.id}` }).click();
  await page.getByText(`Request ${asked.id} is revoked.`).waitFor();
  assert.equal(state(), 'revoked');
  await ctx.close();
  assert.deepEqual(problems, []);
});
