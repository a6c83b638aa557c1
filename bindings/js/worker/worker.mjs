// A Cloudflare Worker that answers Gatehouse decisions at the edge from a
// signed bundle shipped with it (the `web` build of the module), with the
// edge host's /v1 paths and JSON. Answers are the module's JSON strings,
// sent as they are: byte-identical to native pdp-core.
//
// Modules it expects next to it (see worker/README.md): pdp_wasm.js and
// pdp_wasm_bg.wasm (pkg/web), bundle.tar.gz (data), trust.pem (text).

import { initSync, Pdp } from './pdp_wasm.js';
import wasm from './pdp_wasm_bg.wasm';
import bundle from './bundle.tar.gz';
import trustKey from './trust.pem';

let pdp;

// Loaded once per isolate, on first use; a bundle that does not load is
// a 503 on every request (fail closed), never an Allow.
function decisionPoint() {
  if (pdp) return pdp;
  initSync({ module: wasm });
  const loaded = Pdp.load(new Uint8Array(bundle), { trust_keys: [trustKey] });
  if (loaded.type !== 'success') throw new Error(loaded.errors.map((e) => `${e.kind}: ${e.message}`).join('; '));
  pdp = loaded.pdp;
  return pdp;
}

const answer = (body, status = 200) =>
  new Response(body, { status, headers: { 'content-type': 'application/json' } });
const failure = (kind, message, status) => answer(JSON.stringify({ type: 'failure', errors: [{ kind, message }] }), status);

export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (request.method !== 'POST') return failure('method_not_allowed', 'POST a JSON request', 405);
    let p;
    try {
      p = decisionPoint();
    } catch (e) {
      return failure('no_bundle', String(e.message ?? e), 503);
    }
    const body = await request.text();
    switch (pathname) {
      case '/v1/is_authorized':
        return answer(p.isAuthorizedJson(body));
      case '/v1/batch_is_authorized':
        return answer(p.batchIsAuthorizedJson(body));
      case '/v1/is_authorized_with_token': {
        let parsed;
        try {
          parsed = JSON.parse(body);
        } catch (e) {
          return failure('invalid_json', e.message, 200);
        }
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
          return failure('invalid_json', 'a request must be a JSON object', 200);
        }
        const { token, ...rest } = parsed;
        // The clock is the platform's; the module has none.
        return answer(p.isAuthorizedWithTokenJson(token, rest, Date.now() / 1000));
      }
      default:
        return failure('not_found', `no such endpoint: ${pathname}`, 404);
    }
  },
};
