// A real `silo serve` for the browser tests: a fresh data directory, both
// listeners on 127.0.0.1 port 0, the CLI pointed at it; stopped by stop()
// (SIGTERM, then SIGKILL after 10 s). SILO_BIN names the binary
// (default build/silo).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
export const siloBin = process.env.SILO_BIN ?? join(root, 'build', 'silo');

// Spawns a server that dies with this process, even one killed with no
// clean-up: setpriv(1) sets the parent-death signal, then execs the server
// under the same pid. (The signal comes when the spawning thread ends: Node
// spawns from its main thread, which lives as long as the process.)
export function spawnServer(command, args, options) {
  return spawn('setpriv', ['--pdeathsig', 'KILL', '--', command, ...args], options);
}

export async function startSilo(extraEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'silo-browser-'));
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    SILO_DATA_DIR: join(dir, 'data'),
    SILO_LISTEN: '127.0.0.1:0',
    SILO_API_RATE_PER_MINUTE: '1000000', // the limit has its own e2e test
    // The tests mint operator tokens; the lockbox has its own e2e test.
    SILO_OPERATOR_ACCESS: 'allowed',
    SILO_OPERATOR_LISTEN: '127.0.0.1:0',
    SILO_LOGIN_RATE_PER_MINUTE: '1000',
    // The daily backup at 02:00 UTC would otherwise run in whichever test
    // runs then; no browser test is about the schedule.
    SILO_BACKUP_SCHEDULE: 'off',
    ...extraEnv,
  };
  const log = openSync(join(dir, 'server.log'), 'w');
  const proc = spawnServer(siloBin, ['serve'], { env, stdio: ['ignore', log, log] });
  const info = join(env.SILO_DATA_DIR, 'platform', 'server.json');
  const deadline = Date.now() + 20000;
  while (!existsSync(info)) {
    if (proc.exitCode !== null) throw new Error('silo serve exited: ' + readFileSync(join(dir, 'server.log')));
    if (Date.now() > deadline) throw new Error('silo serve did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  let listen = '';
  let operatorListen = '';
  while (!listen) {
    try {
      ({ listen, operator_listen: operatorListen } = JSON.parse(readFileSync(info, 'utf8')));
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const cli = (...args) => execFileSync(siloBin, args, { env, encoding: 'utf8' });
  return {
    pid: proc.pid,
    url: 'https://' + listen,
    operatorUrl: 'http://' + operatorListen,
    operatorToken: () => readFileSync(join(env.SILO_DATA_DIR, 'dev', 'operator.token'), 'utf8').trim(),
    cli,
    log: () => readFileSync(join(dir, 'server.log'), 'utf8'),
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// A TOTP code for `secret` (Base32) at `at` seconds, from oathtool.
export function totp(secret, at = Date.now() / 1000) {
  return execFileSync('oathtool', ['--totp', '-b', '--now', '@' + Math.floor(at), secret], {
    encoding: 'utf8',
  }).trim();
}
