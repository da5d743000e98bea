// Debian's chromium under playwright-core (which downloads nothing: the
// executable is always given), and what every page is checked for: CSP and
// Trusted Types violations (recorded by the page itself and from the
// console), page errors, and axe-core's WCAG 2.2 A/AA rules.
import { chromium, request } from 'playwright-core';

export { request };
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const shots = resolve(import.meta.dirname, '..', '..', '..', 'build', 'console-shots');

export async function launch() {
  const executablePath =
    process.env.SILO_CHROMIUM ?? execFileSync('which', ['chromium']).toString().trim();
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// A fresh context (cookies and storage of its own) whose pages report
// every CSP or Trusted Types violation and every uncaught error into
// `problems`.
export async function context(browser, { colorScheme = 'light', problems = [] } = {}) {
  const ctx = await browser.newContext({
    ignoreHTTPSErrors: true,  // the development certificate; still a secure context
    viewport: { width: 1280, height: 800 },
    colorScheme,
    reducedMotion: 'reduce',
    locale: 'en-GB',
  });
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI);
    });
  });
  ctx.on('page', (page) => watch(page, problems));
  return ctx;
}

function watch(page, problems) {
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|CSP violation|Trusted Type/i.test(m.text())) {
      problems.push(m.text());
    }
  });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
}

// axe-core on the page as it is now (run through the DevTools protocol,
// which the page's CSP does not govern): its violations, all impacts.
export async function axe(page) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    globalThis.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] },
    }));
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

export async function screenshot(page, name) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: resolve(shots, name + '.png'), fullPage: true });
}
