// The npm package (both wasm-pack targets) against native pdp-core: the
// expected answers come from the `pdp decide` CLI over the same signed
// bundle, written to a JSON file during the run, and every answer must be
// byte-identical; so must every page of every search in
// policies/search-corpus.json, against `pdp search`. Bad input must give
// tagged failures, never throw, and leave the module answering correctly.
//
// PDP_BIN names the pdp CLI (scripts/test-wasm sets it); without it the
// test builds it with cargo.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const { Pdp } = require('../pkg/node/pdp_wasm.js');

const NOW = 1_800_000_000;
const ISS = 'https://gatehouse.local/realms/default';
const AUD = 'gatehouse-demo-client';

let tmp, bundle, bundle2, pubPem, kid, cases, lines, expected, searches;

/** The Pdp method of each search kind (`pdp search KIND`). */
const SEARCH = { resource: 'searchResources', subject: 'searchSubjects', action: 'searchActions' };

/** A corpus query as the line sent, with `token` as its page token (a string query is sent as it is). */
function searchLine(query, token) {
  if (typeof query === 'string') return query;
  if (token === undefined) return JSON.stringify(query);
  return JSON.stringify({ ...query, page: { ...(query.page ?? {}), token } });
}

const nextToken = (answer) => JSON.parse(answer).next_token;

/**
 * Every search of policies/search-corpus.json followed page by page
 * through `pdp search`: each round asks every unfinished search its next
 * page, with the next_token its previous page gave (or, first, the token
 * of the case its `token_from` names).
 */
function searchReference(pdp, args) {
  const file = JSON.parse(fs.readFileSync(path.join(root, 'policies/search-corpus.json'), 'utf8'));
  const chains = file.cases.map((c) => ({ ...c, lines: [], answers: [] }));
  for (let round = 0; round < 100; round++) {
    const pending = [];
    for (const c of chains) {
      let token;
      if (c.answers.length) {
        token = nextToken(c.answers.at(-1));
        if (token === undefined) continue;
      } else if (c.token_from !== undefined) {
        const from = chains.find((d) => d.name === c.token_from);
        if (!from.answers.length) continue;
        token = nextToken(from.answers[0]);
        assert.ok(token, `${c.name}: ${c.token_from} has one page only`);
      }
      pending.push([c, searchLine(c.query, token)]);
    }
    if (!pending.length) return chains;
    for (const kind of Object.keys(SEARCH)) {
      const asked = pending.filter(([c]) => c.kind === kind);
      if (!asked.length) continue;
      const out = execFileSync(pdp, ['search', kind, ...args], {
        input: asked.map(([, line]) => line).join('\n'),
        encoding: 'utf8',
      }).trimEnd().split('\n');
      assert.equal(out.length, asked.length);
      asked.forEach(([c, line], i) => {
        c.lines.push(line);
        c.answers.push(out[i]);
      });
    }
  }
  throw new Error('a search did not end within 100 pages');
}

function pdpBin() {
  if (process.env.PDP_BIN) return process.env.PDP_BIN;
  execFileSync('cargo', ['build', '-q', '-p', 'pdp-core', '--features', 'cli', '--bin', 'pdp'], {
    cwd: root,
    stdio: 'inherit',
  });
  const target = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
  return path.join(target, 'debug', 'pdp');
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function jwt(alg, kid, keyFile, claims) {
  const key = fs.readFileSync(path.join(root, 'pdp-core/tests/keys', keyFile));
  const input = `${b64url(JSON.stringify({ alg, kid, typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  const sig =
    alg === 'RS256'
      ? crypto.sign('sha256', Buffer.from(input), key)
      : alg === 'ES256'
        ? crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
        : crypto.sign(null, Buffer.from(input), key);
  return `${input}.${b64url(sig)}`;
}

/**
 * The reference realm in `dir`: policies/ with the identity settings that
 * trust the committed test keys (policies/identity.json trusts none; the
 * edge host's demo realm generates its key at start).
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

function tokens(sub) {
  const id = {
    sub, iss: ISS, aud: AUD, token_use: 'id', iat: NOW - 60, exp: NOW + 3600,
    email: `${sub}@example.com`, 'cognito:groups': ['platform'], amr: ['pwd', 'mfa'],
  };
  const access = {
    sub, iss: ISS, client_id: AUD, token_use: 'access', scope: 'openid', iat: NOW - 5, exp: NOW + 300,
  };
  const expired = { ...id, iat: NOW - 7200, exp: NOW - 3600 };
  return [
    jwt('RS256', 'test-rs256', 'rs256.key.pem', id),
    jwt('ES256', 'test-es256', 'es256.key.pem', access),
    jwt('EdDSA', 'test-eddsa', 'eddsa.key.pem', id),
    jwt('RS256', 'test-rs256', 'rs256.key.pem', expired),
    jwt('RS256', 'test-rs256', 'attacker-rs256.key.pem', id),
    'not.a.token',
  ];
}

before(() => {
  const pdp = pdpBin();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-js-'));
  const run = (...args) => execFileSync(pdp, args, { encoding: 'utf8' });
  const out = run('keygen', '-o', path.join(tmp, 'k'));
  kid = out.split(' ')[1];
  const realm = testRealm(path.join(tmp, 'realm'));
  for (const rev of ['1', '2']) {
    run('bundle', 'build', '--dir', realm, '--sign-key', path.join(tmp, 'k.key.pem'),
      '--revision', rev, '--created-at', '1764000000', '-o', path.join(tmp, `bundle${rev}.tar.gz`));
  }
  bundle = fs.readFileSync(path.join(tmp, 'bundle1.tar.gz'));
  bundle2 = fs.readFileSync(path.join(tmp, 'bundle2.tar.gz'));
  pubPem = fs.readFileSync(path.join(tmp, 'k.pub.pem'), 'utf8');

  // Every corpus request, the same as token requests, and as batches.
  cases = [];
  const dir = path.join(root, 'policies/corpus');
  for (const f of fs.readdirSync(dir).sort()) {
    for (const c of JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')).cases) {
      cases.push({ kind: 'single', name: `${f} / ${c.name}`, request: c.request });
    }
  }
  const singles = cases.slice();
  for (const { name, request } of singles) {
    if (request.principal?.type !== 'User') continue;
    const { principal, ...body } = request;
    for (const token of tokens(principal.id)) {
      cases.push({ kind: 'token', name: `${name} (token)`, token, body });
    }
  }
  for (const key of ['principal', 'resource']) {
    const groups = new Map();
    for (const { request } of singles) {
      const k = JSON.stringify(request[key]);
      groups.set(k, [...(groups.get(k) ?? []), request]);
    }
    for (const [k, requests] of groups) {
      cases.push({ kind: 'batch', name: `batch by ${key} ${k}`, batch: { requests } });
    }
  }
  cases.push({
    kind: 'batch', name: 'batch sharing nothing', batch: { requests: singles.slice(0, 20).map((c) => c.request) },
  });
  lines = cases.map((c) =>
    c.kind === 'single'
      ? JSON.stringify(c.request)
      : c.kind === 'token'
        ? JSON.stringify({ token: c.token, ...c.body })
        : JSON.stringify(c.batch),
  );
  const answers = execFileSync(pdp, ['decide', '--bundle', path.join(tmp, 'bundle1.tar.gz'), '--trust-key',
    path.join(tmp, 'k.pub.pem'), '--now', String(NOW)], { input: lines.join('\n'), encoding: 'utf8' });
  expected = answers.trimEnd().split('\n');
  assert.equal(expected.length, cases.length);
  fs.writeFileSync(path.join(tmp, 'expected.json'), JSON.stringify({ lines, expected }, null, 1));
  searches = searchReference(pdp, ['--bundle', path.join(tmp, 'bundle1.tar.gz'), '--trust-key',
    path.join(tmp, 'k.pub.pem')]);
});

after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function loadOk(P = Pdp, options = { trust_keys: [pubPem] }, bytes = bundle) {
  const r = P.load(bytes, options);
  assert.equal(r.type, 'success', JSON.stringify(r));
  return r.pdp;
}

function checkAll(pdp, label) {
  const want = expected;
  const allowed = { single: 0, token: 0, batch: 0 };
  cases.forEach((c, i) => {
    let got;
    if (c.kind === 'single') {
      got = pdp.isAuthorizedJson(JSON.stringify(c.request));
      // An object gives the very same bytes.
      assert.equal(pdp.isAuthorizedJson(c.request), got, `${label}: ${c.name} (object)`);
      assert.deepEqual(pdp.isAuthorized(c.request), JSON.parse(got));
    } else if (c.kind === 'token') {
      got = pdp.isAuthorizedWithTokenJson(c.token, JSON.stringify(c.body), NOW);
      assert.equal(pdp.isAuthorizedWithTokenJson(c.token, c.body, NOW), got);
      assert.deepEqual(pdp.isAuthorizedWithToken(c.token, c.body, NOW), JSON.parse(got));
    } else {
      got = pdp.batchIsAuthorizedJson(JSON.stringify(c.batch));
      assert.equal(pdp.batchIsAuthorizedJson(c.batch), got);
      assert.deepEqual(pdp.batchIsAuthorized(c.batch), JSON.parse(got));
    }
    assert.equal(got, want[i], `${label}: ${c.name}`);
    if (got.includes('"decision":"Allow"')) allowed[c.kind] += 1;
  });
  // Each kind must reach Allow somewhere, or the parity proves little.
  for (const [kind, n] of Object.entries(allowed)) assert.ok(n > 0, `no ${kind} case was allowed`);
  return cases.length;
}

/**
 * Every search, following the module's own next_token from page to page:
 * each page byte-identical to `pdp search`'s line, as a string or object.
 */
function checkSearches(pdp, label) {
  let found = 0;
  let failed = 0;
  for (const c of searches) {
    const method = SEARCH[c.kind];
    let line = c.lines[0];
    c.answers.forEach((want, i) => {
      const where = `${label}: ${c.name} page ${i + 1}`;
      const got = pdp[`${method}Json`](line);
      assert.equal(got, want, where);
      if (typeof c.query !== 'string') {
        // An object gives the very same bytes.
        assert.equal(pdp[`${method}Json`](JSON.parse(line)), got, `${where} (object)`);
        assert.deepEqual(pdp[method](JSON.parse(line)), JSON.parse(got), `${where} (object)`);
      }
      const answer = JSON.parse(got);
      if (answer.results?.length) found += 1;
      if (answer.type === 'failure') failed += 1;
      if (answer.next_token !== undefined) line = searchLine(c.query, answer.next_token);
      else assert.equal(i + 1, c.answers.length, where);
      if (i + 1 < c.lines.length) assert.equal(line, c.lines[i + 1], `${where}: following the module's token`);
    });
  }
  // Pages with results and failures both, or the parity proves little.
  assert.ok(found > 0 && failed > 0, `${found} non-empty pages, ${failed} failures`);
  return found + failed;
}

test('loads a signed bundle: by PEM, by JWKS, never unsigned without dev', () => {
  const r = Pdp.load(bundle, { trust_keys: [pubPem] });
  assert.equal(r.type, 'success', JSON.stringify(r));
  assert.equal(r.revision, 1);
  assert.equal(r.realm, 'default');
  assert.equal(r.signed_by, kid);
  assert.equal(r.pdp.revision(), 1);
  const jwk = crypto.createPublicKey(pubPem).export({ format: 'jwk' });
  assert.equal(Pdp.load(bundle, JSON.stringify({ jwks: { keys: [{ ...jwk, kid }] } })).type, 'success');
  const none = Pdp.load(bundle);
  assert.equal(none.type, 'failure');
  assert.equal(none.errors[0].kind, 'invalid_options');
});

test('every corpus case, token request and batch answers byte-identically to native (nodejs target)', () => {
  const pdp = loadOk();
  const n = checkAll(pdp, 'nodejs');
  assert.ok(n >= 40 + 6 * 40, `only ${n} cases`);
  pdp.free();
});

test('every search answers byte-identically to native, page by page (nodejs target)', () => {
  const pdp = loadOk();
  checkSearches(pdp, 'nodejs');
  pdp.free();
});

test('the web target answers the same', async () => {
  const web = await import('../pkg/web/pdp_wasm.js');
  web.initSync({ module: fs.readFileSync(path.join(here, '../pkg/web/pdp_wasm_bg.wasm')) });
  const pdp = loadOk(web.Pdp);
  checkAll(pdp, 'web');
  checkSearches(pdp, 'web');
});

test('users and bundle updates', () => {
  const pdp = loadOk();
  const alice = pdp.user('alice');
  assert.equal(alice.type, 'success');
  assert.equal(alice.user.id, 'alice');
  assert.deepEqual(pdp.user('nobody'), { type: 'success', user: null });
  assert.equal(pdp.user(42).type, 'failure');
  const corrupt = Buffer.from(bundle2);
  corrupt.fill(0x5a, corrupt.length >> 1, (corrupt.length >> 1) + 64);
  const bad = pdp.applyDelta(corrupt);
  assert.equal(bad.type, 'failure');
  assert.equal(pdp.revision(), 1);
  // A page token of revision 1 on revision 2 is refused as expired.
  const paged = searches.find((c) => c.answers.length > 1);
  const continued = searchLine(paged.query, nextToken(paged.answers[0]));
  assert.equal(pdp[SEARCH[paged.kind]](continued).type, 'success');
  const ok = pdp.applyDelta(bundle2);
  assert.equal(ok.type, 'success', JSON.stringify(ok));
  assert.equal(ok.revision, 2);
  const again = pdp.applyDelta(bundle);
  assert.equal(again.errors[0].kind, 'rollback');
  assert.equal(pdp.isAuthorized(cases[0].request).revision ?? 2, 2);
  assert.equal(pdp[SEARCH[paged.kind]](continued).errors[0].kind, 'cursor_expired');
});

test('bad input is a tagged failure, never a throw, and the module keeps answering', () => {
  const pdp = loadOk();
  const cyclic = {};
  cyclic.self = cyclic;
  const bads = ['', 'not json', '[]', 'null', '{}', '{"principal": "alice"}', 42, null, undefined,
    true, [], cyclic, { big: 10n }, Symbol('x'), () => 1,
    { principal: { type: 'User', id: 'alice' }, action: { type: 'Action', id: 'readDocument' },
      resource: { type: 'Document', id: 'design-doc' }, extra: 1 }];
  for (const bad of bads) {
    for (const call of [
      () => pdp.isAuthorized(bad),
      () => pdp.batchIsAuthorized(bad),
      () => pdp.isAuthorizedWithToken('x.y.z', bad, NOW),
      () => JSON.parse(pdp.isAuthorizedJson(bad)),
      () => pdp.searchResources(bad),
      () => pdp.searchSubjects(bad),
      () => JSON.parse(pdp.searchActionsJson(bad)),
    ]) {
      const r = call();
      assert.equal(r.type, 'failure', `${String(typeof bad === 'symbol' ? 'symbol' : bad)}: ${JSON.stringify(r)}`);
      assert.ok(r.errors[0].kind && r.errors[0].message);
    }
  }
  const body = { action: { type: 'Action', id: 'readDocument' }, resource: { type: 'Document', id: 'design-doc' } };
  assert.equal(pdp.isAuthorizedWithToken(undefined, body, NOW).type, 'failure');
  assert.equal(pdp.isAuthorizedWithToken('x.y.z', body, NaN).type, 'failure');
  assert.equal(pdp.isAuthorizedWithToken('x.y.z', { token: 'a', ...body }, NOW).type, 'failure');
  // 100 MB: refused by size before it is copied into the module.
  const huge = 'x'.repeat(100 << 20);
  assert.equal(pdp.isAuthorized(huge).errors[0].kind, 'request_too_large');
  assert.equal(pdp.batchIsAuthorizedJson(huge).includes('request_too_large'), true);
  assert.equal(pdp.isAuthorizedWithToken(huge, body, NOW).errors[0].kind, 'request_too_large');
  assert.equal(pdp.user(huge).errors[0].kind, 'request_too_large');
  for (const method of Object.values(SEARCH)) assert.equal(pdp[method](huge).errors[0].kind, 'request_too_large');
  // Corrupt and foreign bundles, bad options.
  const corrupt = Buffer.from(bundle);
  corrupt.fill(0, corrupt.length >> 1);
  for (const [bytes, options] of [
    [corrupt, { trust_keys: [pubPem] }],
    [Buffer.from('garbage'), { dev: true }],
    [new Uint8Array(0), { dev: true }],
    [bundle, { trust_keys: ['not a key'] }],
    [bundle, '{"dev": tru'],
    [bundle, { dev: true, unknown: 1 }],
    [bundle, 17],
  ]) {
    const r = Pdp.load(bytes, options);
    assert.equal(r.type, 'failure', JSON.stringify(r));
  }
  // Still exactly right afterwards.
  checkAll(pdp, 'after bad input');
  checkSearches(pdp, 'after bad input');
});
