// The SMTP sink of lib/smtp_sink.py: a real mail server on 127.0.0.1 whose
// messages the test reads.
import { join } from 'node:path';

import { spawnServer } from './silo.mjs';

export async function startSmtp() {
  const proc = spawnServer('/usr/bin/python3', [join(import.meta.dirname, 'smtp_sink.py')], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const messages = [];
  let buffered = '';
  let port = 0;
  const ready = new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error('smtp sink exited ' + code)));
    proc.stdout.on('data', (chunk) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith('PORT ')) {
          port = Number(line.slice(5));
          resolve();
        } else if (line) {
          messages.push(JSON.parse(line));
        }
      }
    });
  });
  await ready;
  return {
    url: 'smtp://127.0.0.1:' + port,
    messages,
    // The first message to `to` after `seen` messages, waiting up to 20 s.
    async next(to, seen = 0) {
      const deadline = Date.now() + 20000;
      while (Date.now() < deadline) {
        const m = messages.slice(seen).find((x) => x.to.includes(to));
        if (m) return m;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('no mail to ' + to);
    },
    stop() {
      proc.stdin.end();
      proc.kill('SIGTERM');
    },
  };
}
