// Decision latency of the npm package in Node over the corpus requests
// that decide (p50/p99 of single isAuthorizedJson calls, string in and
// out). A measurement, not a test:
//   PDP_BIN=path/to/pdp node bench/latency.mjs
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const { Pdp } = createRequire(import.meta.url)('../pkg/node/pdp_wasm.js');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-'));
const out = path.join(tmp, 'bundle.tar.gz');
execFileSync(process.env.PDP_BIN ?? 'pdp', ['bundle', 'build', '--dir', path.join(root, 'policies'), '-o', out], { stdio: 'ignore' });
const loaded = Pdp.load(fs.readFileSync(out), { dev: true });
fs.rmSync(tmp, { recursive: true, force: true });
if (loaded.type !== 'success') throw new Error(JSON.stringify(loaded));
const pdp = loaded.pdp;

const requests = [];
for (const f of fs.readdirSync(path.join(root, 'policies/corpus'))) {
  for (const c of JSON.parse(fs.readFileSync(path.join(root, 'policies/corpus', f), 'utf8')).cases) {
    if (!c.failure) requests.push(JSON.stringify(c.request));
  }
}
const times = [];
for (let round = 0; round < 220; round++) {
  for (const r of requests) {
    const t = process.hrtime.bigint();
    pdp.isAuthorizedJson(r);
    if (round >= 20) times.push(Number(process.hrtime.bigint() - t) / 1000);
  }
}
times.sort((a, b) => a - b);
const pct = (p) => times[Math.floor((times.length * p) / 100)].toFixed(1);
console.log(`${times.length} decisions (${requests.length} requests x 200, after 20 warm-up rounds)`);
console.log(`node ${process.version} isAuthorizedJson: p50 ${pct(50)} us, p99 ${pct(99)} us`);
