// Decodes the body of every golden vector (spec/vectors/*.json) with an independent MessagePack
// library, @msgpack/msgpack, and prints a JSON structural summary on stdout.
// tests/test_thirdparty_msgpack.py compares the summary with what the Python core decoded.
//
// usage: node decode_vectors.cjs SPEC_VECTORS_DIR
//
// Summary of a value (tags keep JSON types apart):
//   null, true, false               themselves
//   ["str", s]                      a string
//   ["num", "123"]                  a JS number holding an integer below 2^53 (an int, or a float
//                                   with an integral value: JS cannot tell them apart)
//   ["int", "123"]                  a bigint (int 64 / uint 64 families)
//   ["f64", "3ff8000000000000"]     any other number, as its float64 bits
//   ["bin", hex]                    bytes
//   ["arr", [...]]                  an array
//   ["map", [[key, value], ...]]    a map, in wire order (keys are strings in rlay)
//   ["ext", type, hex]              an ext value with its payload
// Output: [{"id": "file:name", "ok": summary} | {"id": ..., "error": message}, ...]
"use strict";

const fs = require("fs");
const path = require("path");
const { Decoder, ExtensionCodec } = require("@msgpack/msgpack");

const hex = (bytes) => Buffer.from(bytes).toString("hex");

class Ext {
  constructor(type, payload) {
    this.type = type;
    this.payload = payload;
  }
}

const extensionCodec = new ExtensionCodec();
for (let type = -128; type <= 127; type++) {
  if (type === -1) continue; // the library decodes timestamps itself; none occur in valid vectors
  extensionCodec.register({ type, encode: () => null, decode: (data) => new Ext(type, Uint8Array.from(data)) });
}

// Map keys become object properties; a prefix keeps their wire order (JS orders integer-like
// property names first) and keeps "__proto__" an ordinary key.
const KEY_PREFIX = "k:";

const decoder = new Decoder({
  extensionCodec,
  useBigInt64: true,
  keyDecoder: null,
  mapKeyConverter: (key) => {
    if (typeof key !== "string") throw new Error(`map key of type ${typeof key}`);
    return KEY_PREFIX + key;
  },
});

function f64bits(x) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  return hex(new Uint8Array(view.buffer));
}

function summary(v) {
  if (v === null || v === true || v === false) return v;
  if (typeof v === "string") return ["str", v];
  if (typeof v === "bigint") return ["int", v.toString()];
  if (typeof v === "number") {
    if (Number.isInteger(v) && !Object.is(v, -0) && Math.abs(v) < 2 ** 53) return ["num", String(v)];
    return ["f64", f64bits(v)];
  }
  if (v instanceof Uint8Array) return ["bin", hex(v)];
  if (v instanceof Ext) return ["ext", v.type, hex(v.payload)];
  if (Array.isArray(v)) return ["arr", v.map(summary)];
  if (typeof v === "object") {
    return ["map", Object.keys(v).map((k) => [k.slice(KEY_PREFIX.length), summary(v[k])])];
  }
  throw new Error(`unexpected decoded value of type ${typeof v}`);
}

function body(frameHex) {
  const frame = Buffer.from(frameHex, "hex");
  const dataLen = frame.readUInt32LE(4);
  const bodyLen = frame.readUInt32LE(8);
  return frame.subarray(12 + dataLen, 12 + dataLen + bodyLen);
}

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node decode_vectors.cjs SPEC_VECTORS_DIR");
  process.exit(2);
}
const out = [];
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
  const doc = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8"));
  for (const vec of doc.vectors) {
    if (!("frame" in vec)) continue;
    const id = `${file}:${vec.name}`;
    const frame = Buffer.from(vec.frame, "hex");
    if (frame.length < 12 || frame[0] !== 0x52 || frame[1] !== 0x4c) continue; // not a whole frame
    const dataLen = frame.readUInt32LE(4);
    const bodyLen = frame.readUInt32LE(8);
    if (frame.length !== 12 + dataLen + bodyLen) continue; // truncated or several frames
    try {
      out.push({ id, ok: summary(decoder.decode(body(vec.frame))) });
    } catch (err) {
      out.push({ id, error: String(err && err.message ? err.message : err) });
    }
  }
}
process.stdout.write(JSON.stringify(out));
