// The Cloudflare Worker (worker/worker.mjs) under a real workerd (npm
// `workerd`, offline, on 127.0.0.1): every corpus request and batch, and
// token requests, answered over HTTP byte-identically to the pdp CLI;
// bad bodies are tagged failures; a bundle it cannot trust is a 503.
//
// PDP_BIN names the pdp CLI (scripts/test-wasm sets it).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const NOW = Math.floor(Date.now() / 1000);
const ISS = 'https://gatehouse.local/realms/default';
const AUD = 'gatehouse-demo-client';

let tmp;
const workers = [];

function pdpBin() {
  if (process.env.PDP_BIN) return process.env.PDP_BIN;
  execFileSync('cargo', ['build', '-q', '-p', 'pdp-core', '--features', 'cli', '--bin', 'pdp'], { cwd: root, stdio: 'inherit' });
  return path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'debug', 'pdp');
}

const b64url = (b) => Buffer.from(b).toString('base64url');
function rs256(claims) {
  const input = `${b64url(JSON.stringify({ alg: 'RS256', kid: 'test-rs256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  const key = fs.readFileSync(path.join(root, 'pdp-core/tests/keys/rs256.key.pem'));
  return `${input}.${b64url(crypto.sign('sha256', Buffer.from(input), key))}`;
}

/**
 * The reference realm in `dir`: policies/ with the identity settings that
 * trust the committed test keys (policies/identity.json trusts none).
 */
function testRealm(dir) {
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(path.join(root, 'policies'))) {
    const from = path.join(root, 'policies', f);
    if (fs.statSync(from).isFile()) fs.copyFileSync(from, path.join(dir, f));
  }
  fs.copyFileSync(path.join(root, 'pdp-core/tests/keys/identity.json'), path.join(dir, 'identity.json'));
  return dir;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Stage a worker directory with `trustPem` and start workerd on it; its base URL. */
async function startWorker(name, trustPem) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(here, '../worker/worker.mjs'), path.join(dir, 'worker.mjs'));
  for (const f of ['pdp_wasm.js', 'pdp_wasm_bg.wasm']) fs.copyFileSync(path.join(here, '../pkg/web', f), path.join(dir, f));
  fs.copyFileSync(path.join(tmp, 'bundle.tar.gz'), path.join(dir, 'bundle.tar.gz'));
  fs.writeFileSync(path.join(dir, 'trust.pem'), trustPem);
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'config.capnp'), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = .worker)],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "worker.mjs", esModule = embed "worker.mjs"),
    (name = "pdp_wasm.js", esModule = embed "pdp_wasm.js"),
    (name = "pdp_wasm_bg.wasm", wasm = embed "pdp_wasm_bg.wasm"),
    (name = "bundle.tar.gz", data = embed "bundle.tar.gz"),
    (name = "trust.pem", text = embed "trust.pem"),
  ],
  compatibilityDate = "2025-01-01",
);
`);
  // The npm bin: the platform binary itself, or a launcher script for it.
  const bin = path.join(here, '../node_modules/.bin/workerd');
  const child = spawn(bin, ['serve', path.join(dir, 'config.capnp')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  workers.push(child);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`workerd exited: ${stderr}`);
    try {
      await fetch(url, { method: 'GET' });
      return url;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`workerd did not listen: ${stderr}`);
}

let url, lines, expected, endpoints;

before(async () => {
  const pdp = pdpBin();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-worker-'));
  execFileSync(pdp, ['keygen', '-o', path.join(tmp, 'k')]);
  execFileSync(pdp, ['bundle', 'build', '--dir', testRealm(path.join(tmp, 'realm')), '--sign-key', path.join(tmp, 'k.key.pem'),
    '-o', path.join(tmp, 'bundle.tar.gz')]);
  const requests = [];
  const dir = path.join(root, 'policies/corpus');
  for (const f of fs.readdirSync(dir).sort()) {
    for (const c of JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')).cases) requests.push(c.request);
  }
  lines = [];
  endpoints = [];
  for (const r of requests) {
    lines.push(JSON.stringify(r));
    endpoints.push('/v1/is_authorized');
    if (r.principal?.type === 'User') {
      const { principal, ...body } = r;
      const token = rs256({ sub: principal.id, iss: ISS, aud: AUD, token_use: 'id', iat: NOW - 60, exp: NOW + 3600 });
      lines.push(JSON.stringify({ token, ...body }));
      endpoints.push('/v1/is_authorized_with_token');
    }
  }
  const byPrincipal = new Map();
  for (const r of requests) byPrincipal.set(JSON.stringify(r.principal), [...(byPrincipal.get(JSON.stringify(r.principal)) ?? []), r]);
  for (const rs of byPrincipal.values()) {
    lines.push(JSON.stringify({ requests: rs }));
    endpoints.push('/v1/batch_is_authorized');
  }
  expected = execFileSync(pdp, ['decide', '--bundle', path.join(tmp, 'bundle.tar.gz'), '--trust-key', path.join(tmp, 'k.pub.pem'),
    '--now', String(NOW)], { input: lines.join('\n'), encoding: 'utf8' }).trimEnd().split('\n');
  assert.equal(expected.length, lines.length);
  fs.writeFileSync(path.join(tmp, 'expected.json'), JSON.stringify({ lines, expected }, null, 1));
  url = await startWorker('signed', fs.readFileSync(path.join(tmp, 'k.pub.pem'), 'utf8'));
});

after(() => {
  for (const w of workers) w.kill();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const post = (u, body) => fetch(u, { method: 'POST', body, headers: { 'content-type': 'application/json' } });

test('every corpus request, token request and batch over HTTP equals native', async () => {
  let allowed = 0;
  for (let i = 0; i < lines.length; i++) {
    const res = await post(url + endpoints[i], lines[i]);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/json');
    const got = await res.text();
    assert.equal(got, expected[i], `${endpoints[i]} ${lines[i].slice(0, 120)}`);
    if (got.includes('"decision":"Allow"')) allowed += 1;
  }
  assert.ok(allowed > 0);
  assert.ok(endpoints.includes('/v1/is_authorized_with_token') && expected.some((e, i) =>
    endpoints[i] === '/v1/is_authorized_with_token' && e.includes('"decision":"Allow"')), 'no token request was allowed');
});

test('bad bodies are tagged failures, and the worker keeps answering', async () => {
  for (const path_ of ['/v1/is_authorized', '/v1/batch_is_authorized', '/v1/is_authorized_with_token']) {
    for (const body of ['', 'not json', '[]', 'null', '{}', '{"token": 5}', 'x'.repeat(2 << 20)]) {
      const res = await post(url + path_, body);
      assert.equal(res.status, 200);
      const a = await res.json();
      assert.equal(a.type, 'failure', `${path_} ${body.slice(0, 20)}`);
    }
  }
  assert.equal((await fetch(url + '/v1/is_authorized')).status, 405);
  assert.equal((await post(url + '/nope', '{}')).status, 404);
  const res = await post(url + '/v1/is_authorized', lines[0]);
  assert.equal(await res.text(), expected[0]);
});

test('a bundle signed by a key the worker does not trust is a 503, never an answer', async () => {
  const other = crypto.generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' });
  const u = await startWorker('untrusted', other);
  const res = await post(u + '/v1/is_authorized', lines[0]);
  assert.equal(res.status, 503);
  const a = await res.json();
  assert.equal(a.type, 'failure');
  assert.equal(a.errors[0].kind, 'no_bundle');
  assert.match(a.errors[0].message, /unknown_kid/);
});
