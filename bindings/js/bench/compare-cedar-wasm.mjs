// The same requests through this package and through @cedar-policy/cedar-wasm
// (the Cedar project's own WebAssembly build), in the same Node process:
// the corpus requests that decide, against the reference realm. Cedar is
// given every entity of the realm (users included, as Gatehouse's directory
// would make them) and, in its stateful mode, a pre-parsed schema and policy
// set — its fastest use. A measurement, not a test:
//   PDP_BIN=path/to/pdp node bench/compare-cedar-wasm.mjs

import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const src = (f) => fs.readFileSync(path.join(root, 'policies', f), 'utf8');
const { Pdp } = createRequire(import.meta.url)('../pkg/node/pdp_wasm.js');

// Gatehouse: the bundle built from policies/.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-'));
const out = path.join(tmp, 'bundle.tar.gz');
execFileSync(process.env.PDP_BIN ?? 'pdp', ['bundle', 'build', '--dir', path.join(root, 'policies'), '-o', out], { stdio: 'ignore' });
const loaded = Pdp.load(fs.readFileSync(out), { dev: true });
fs.rmSync(tmp, { recursive: true, force: true });
if (loaded.type !== 'success') throw new Error(JSON.stringify(loaded));
const pdp = loaded.pdp;

// Cedar: the same schema, policies (templates and links) and entities.
const parts = cedar.policySetTextToParts(src('policies.cedar'));
if (parts.type !== 'success') throw new Error(JSON.stringify(parts));
const idOf = (text) => /@id\("([^"]+)"\)/.exec(text)?.[1];
const policies = {
  staticPolicies: Object.fromEntries(parts.policies.map((p) => [idOf(p), p])),
  templates: Object.fromEntries(parts.policy_templates.map((t) => [idOf(t), t])),
  templateLinks: JSON.parse(src('links.json')).map((l) => ({ templateId: l.template_id, newId: l.new_id, values: l.values })),
};
const users = src('users.jsonl').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)).map((u) => ({
  uid: { type: 'User', id: u.id },
  attrs: { ...u.attrs, state: u.state, email: u.email, realm: 'default' },
  parents: [...u.groups.map((id) => ({ type: 'Group', id })), ...u.roles.map((id) => ({ type: 'Role', id }))],
}));
const entities = [...JSON.parse(src('entities.json')), ...users];
const schema = src('schema.cedarschema');
for (const [what, r] of [['schema', cedar.preparseSchema('s', schema)], ['policies', cedar.preparsePolicySet('p', policies)]]) {
  if (r.type !== 'success') throw new Error(`${what}: ${JSON.stringify(r)}`);
}

const requests = [];
for (const f of fs.readdirSync(path.join(root, 'policies/corpus')).sort()) {
  for (const c of JSON.parse(fs.readFileSync(path.join(root, 'policies/corpus', f), 'utf8')).cases) {
    if (!c.failure) requests.push(c.request);
  }
}

const gatehouse = (r) => pdp.isAuthorizedJson(JSON.stringify(r));
// Request-supplied entities never replace a realm entity (as in Gatehouse).
const known = new Set(entities.map((e) => `${e.uid.type}::${e.uid.id}`));
const extra = (r) => (r.entities ?? []).filter((e) => !known.has(`${e.uid?.type}::${e.uid?.id}`));
const call = (r) => ({ principal: r.principal, action: r.action, resource: r.resource, context: r.context ?? {}, entities: [...entities, ...extra(r)] });
const stateful = (r) => cedar.statefulIsAuthorized({ ...call(r), preparsedSchemaName: 's', preparsedPolicySetId: 'p', validateRequest: true });
const stateless = (r) => cedar.isAuthorized({ ...call(r), schema, policies, validateRequest: true });

// Same decisions first (Gatehouse's lifecycle gate aside: it denies
// non-Active users before Cedar runs, which Cedar alone may not).
let compared = 0;
for (const r of requests) {
  const g = JSON.parse(gatehouse(r));
  const c = stateful(r);
  if (c.type !== 'success') throw new Error(`cedar-wasm: ${JSON.stringify(c)}`);
  if (/^(user_state|unknown_user)/.test(g.reason)) continue;
  const want = c.response.decision === 'allow' ? 'Allow' : 'Deny';
  if (g.decision !== want) throw new Error(`decisions differ on ${JSON.stringify(r)}: ${g.decision} vs ${want}`);
  compared += 1;
}

function measure(fn, rounds) {
  const times = [];
  for (let round = 0; round < rounds + 10; round++) {
    for (const r of requests) {
      const t = process.hrtime.bigint();
      fn(r);
      if (round >= 10) times.push(Number(process.hrtime.bigint() - t) / 1000);
    }
  }
  times.sort((a, b) => a - b);
  const pct = (p) => times[Math.floor((times.length * p) / 100)];
  return { p50: pct(50), p99: pct(99), n: times.length };
}

const results = {
  'gatehouse-pdp isAuthorizedJson': measure(gatehouse, 200),
  'cedar-wasm statefulIsAuthorized': measure(stateful, 50),
  'cedar-wasm isAuthorized (stateless)': measure(stateless, 10),
};
console.log(`${requests.length} corpus requests; ${compared} decisions compared and equal; node ${process.version}, cedar ${cedar.getCedarVersion()}`);
const base = results['gatehouse-pdp isAuthorizedJson'].p50;
for (const [name, { p50, p99, n }] of Object.entries(results)) {
  console.log(`${name.padEnd(38)} p50 ${p50.toFixed(1).padStart(7)} us  p99 ${p99.toFixed(1).padStart(8)} us  (${n} calls, ${(p50 / base).toFixed(1)}x)`);
}
