// Drops the `name` and `producers` custom sections from WebAssembly files,
// in place: the function names alone are ~1.3 MB of the module, and
// wasm-pack cannot ask wasm-bindgen to leave them out. (Stripping in cargo
// would also drop `target_features`, which wasm-bindgen reads.)
//
// usage: node tools/strip-name-section.mjs FILE.wasm...

import fs from 'node:fs';

const DROP = new Set(['name', 'producers']);

function uleb(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[at++];
    if (b === undefined) throw new Error('truncated LEB128');
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [value, at];
  }
}

function strip(bytes) {
  if (bytes.readUInt32LE(0) !== 0x6d736100) throw new Error('not a WebAssembly module');
  const kept = [bytes.subarray(0, 8)];
  let at = 8;
  while (at < bytes.length) {
    const start = at;
    const id = bytes[at++];
    const [size, body] = uleb(bytes, at);
    const end = body + size;
    if (end > bytes.length) throw new Error('section runs past the end');
    let drop = false;
    if (id === 0) {
      const [len, name] = uleb(bytes, body);
      drop = DROP.has(bytes.subarray(name, name + len).toString('utf8'));
    }
    if (!drop) kept.push(bytes.subarray(start, end));
    at = end;
  }
  return Buffer.concat(kept);
}

for (const file of process.argv.slice(2)) {
  const before = fs.readFileSync(file);
  const after = strip(before);
  new WebAssembly.Module(after); // still a valid module, or this throws
  fs.writeFileSync(file, after);
  console.log(`${file}: ${before.length} -> ${after.length} bytes`);
}
