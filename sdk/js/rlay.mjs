// rlay.mjs - turn a JavaScript program (a browser game, a Node simulator) into a Gymnasium
// environment: the env side of the rlay protocol v1 (spec/protocol.md), one dependency-free ES
// module for browsers and Node >= 20.
//
//   import * as rlay from "./rlay.mjs";
//   const env = new rlay.EnvSide({
//     observationSpace: rlay.box({ low: -10, high: 10, shape: [1], dtype: "float32" }),
//     actionSpace: rlay.discrete(2),
//   });
//   let pos = 0;
//   await env.listen("tcp://127.0.0.1:5555");          // Python: rlay.ClientEnv(address)
//   await env.serve({                                  // callback style
//     reset(seed, options) { pos = 0; return [[pos], {}]; },
//     step(action) { pos += action ? 1 : -1; return [[pos], 0, Math.abs(pos) >= 5, false, {}]; },
//   });
//
// Loop style (a game's requestAnimationFrame or fixed-step loop): call env.poll() once a frame;
// it never blocks and returns the next command or null. Answer it with cmd.reply(...) (or
// cmd.fail(error)) now or frames later. Connections: env.listen(address) (Node: tcp://, unix://,
// ws://) waits for Python's ClientEnv; env.connect(address) dials Python's ServerEnv (tcp://,
// unix:// in Node; ws:// anywhere a WebSocket exists). Over ws:// one binary WebSocket message
// carries exactly one rlay frame.
//
// Values: null, booleans, numbers (an integral number travels as an int, any other as a float;
// rlay.float(x) forces a float), BigInt (int64/uint64 range), strings, Uint8Array (bytes), arrays,
// plain objects and Maps (str keys; a Map keeps the order of integer-like keys, which a plain
// object would sort), rlay.Tensor (any dtype of spec section 4; other typed arrays travel as 1-d
// tensors). Received tensors are Tensor objects whose .data is a typed array over the received
// frame without a copy where alignment allows (int64/uint64 as BigInt64Array/BigUint64Array,
// float16 as Uint16Array bits, bool as Uint8Array).
//
// Errors: an exception in your env code becomes an ENV_EXCEPTION reply with its type and stack
// (non-fatal: the session goes on). Protocol errors end the session with a fatal ERROR naming the
// problem; env.done then resolves with the RlayError (null after an orderly end).

export const PROTOCOL_VERSION = 1;
export const SDK_NAME = "rlay-js";
export const SDK_VERSION = "0.1.0";
export const DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024;
export const DEFAULT_MAX_HANDSHAKE_FRAME_SIZE = 64 * 1024; // the first frame received (section 13)
export const DEFAULT_MAX_VALUES = 262144; // values one body may declare (sections 3, 13)
export const MAX_DEPTH = 64;
export const MAX_NDIM = 32;

// ---- error codes (section 11) --------------------------------------------------------------
export const ErrorCode = Object.freeze({
  BAD_MAGIC: 1, BAD_HEADER: 2, FRAME_TOO_LARGE: 3, TRUNCATED: 4, MALFORMED: 5, UNKNOWN_KIND: 6,
  BAD_FIELD: 7, BAD_TENSOR: 8, UNKNOWN_DTYPE: 9, TOO_DEEP: 10, UNEXPECTED_MESSAGE: 11,
  VERSION_MISMATCH: 12, ROLE_CONFLICT: 13, BAD_SPACE: 14, BAD_VALUE: 15,
  ENV_EXCEPTION: 32, INVALID_ACTION: 33, NOT_SUPPORTED: 34, RESET_NEEDED: 35, SHUTTING_DOWN: 36,
  INTERNAL: 37,
});
const CODE_NAMES = Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k]));
export function errorName(code) {
  return CODE_NAMES[code] ?? `code ${code}`;
}

/** Base class of every rlay error. `code` is a section-11 code, or null for a local condition. */
export class RlayError extends Error {
  constructor(code, message) {
    super(code == null ? message : `${errorName(code)}: ${message}`);
    this.name = "RlayError";
    this.code = code;
    this.detail = message;
  }
  get codeName() {
    return this.code == null ? null : errorName(this.code);
  }
}
/** The peer sent an ERROR (fatal, since an env side only receives fatal ones). */
export class RemoteError extends RlayError {
  constructor(code, message, fatal, remoteType, traceback) {
    super(code, `from the peer: ${message}`);
    this.name = "RemoteError";
    this.fatal = fatal;
    this.remoteType = remoteType;
    this.traceback = traceback;
  }
}
/** The connection ended while the session was not over. */
export class PeerClosedError extends RlayError {
  constructor(message) {
    super(null, message);
    this.name = "PeerClosedError";
  }
}
/** An error raised by env code on purpose with a chosen code (e.g. NOT_SUPPORTED, INVALID_ACTION). */
export class EnvError extends Error {
  constructor(code, message, { fatal = false, remoteType = null } = {}) {
    super(message);
    this.name = "EnvError";
    this.code = code;
    this.fatal = fatal;
    this.remoteType = remoteType;
  }
}
function fail(code, message) {
  throw new RlayError(code, message);
}

// ---- message kinds (section 6) -------------------------------------------------------------
export const Kind = Object.freeze({
  HELLO: 1, ENV_INFO: 2, RESET: 16, STEP: 17, RENDER: 18, CLOSE: 19, CALL: 20,
  RESET_RESULT: 32, STEP_RESULT: 33, RENDER_RESULT: 34, CLOSE_RESULT: 35, CALL_RESULT: 36,
  ERROR: 48,
});
const KIND_NAMES = Object.fromEntries(Object.entries(Kind).map(([k, v]) => [v, k]));

// ---- dtypes (section 4): the one table every mapping is derived from -----------------------
const DTYPE_TABLE = [
  // code, name, itemsize, typed array, kind
  [1, "bool", 1, Uint8Array, "b"],
  [2, "int8", 1, Int8Array, "i"],
  [3, "int16", 2, Int16Array, "i"],
  [4, "int32", 4, Int32Array, "i"],
  [5, "int64", 8, BigInt64Array, "i"],
  [6, "uint8", 1, Uint8Array, "u"],
  [7, "uint16", 2, Uint16Array, "u"],
  [8, "uint32", 4, Uint32Array, "u"],
  [9, "uint64", 8, BigUint64Array, "u"],
  [10, "float16", 2, Uint16Array, "f"],
  [11, "float32", 4, Float32Array, "f"],
  [12, "float64", 8, Float64Array, "f"],
];
const DT_BY_CODE = new Map(DTYPE_TABLE.map((r) => [r[0], { code: r[0], name: r[1], size: r[2], Array: r[3], kind: r[4] }]));
const DT = new Map([...DT_BY_CODE.values()].map((d) => [d.name, d]));
const INT_RANGE = {
  int8: [-128n, 127n], int16: [-32768n, 32767n], int32: [-(2n ** 31n), 2n ** 31n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n], uint8: [0n, 255n], uint16: [0n, 65535n],
  uint32: [0n, 2n ** 32n - 1n], uint64: [0n, 2n ** 64n - 1n], bool: [0n, 1n],
};
function typedDtype(a) {
  if (a instanceof Int8Array) return "int8";
  if (a instanceof Int16Array) return "int16";
  if (a instanceof Int32Array) return "int32";
  if (a instanceof BigInt64Array) return "int64";
  if (a instanceof Uint8Array || a instanceof Uint8ClampedArray) return "uint8";
  if (a instanceof Uint16Array) return "uint16";
  if (a instanceof Uint32Array) return "uint32";
  if (a instanceof BigUint64Array) return "uint64";
  if (a instanceof Float32Array) return "float32";
  if (a instanceof Float64Array) return "float64";
  return null;
}

/** An n-dimensional array of one dtype: `data` is a typed array of prod(shape) elements, C order. */
export class Tensor {
  constructor(dtype, shape, data) {
    this.dtype = dtype;
    this.shape = shape;
    this.data = data;
  }
  get size() {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get bytes() {
    return new Uint8Array(this.data.buffer, this.data.byteOffset, this.data.byteLength);
  }
  toString() {
    return `Tensor(${this.dtype}, [${this.shape}])`;
  }
}

/**
 * A tensor of `dtype` and `shape` from a typed array (used as is when its type fits) or a
 * (nested) array of numbers/booleans/BigInts (converted).
 */
export function tensor(dtype, shape, data) {
  const dt = DT.get(dtype);
  if (!dt) throw new TypeError(`unknown dtype ${JSON.stringify(dtype)}; expected one of ${[...DT.keys()].join(", ")}`);
  const flat = Array.isArray(data) ? data.flat(Infinity) : data;
  if (shape == null) shape = Array.isArray(data) ? inferShape(data) : [flat.length];
  const n = shape.reduce((a, b) => a * b, 1);
  let arr;
  if (ArrayBuffer.isView(flat) && flat.constructor === dt.Array && (dtype !== "uint8" || !(flat instanceof Uint8ClampedArray))) arr = flat;
  else {
    arr = new dt.Array(n);
    if (flat.length !== n) throw new TypeError(`tensor: expected ${n} elements for shape [${shape}], actual ${flat.length}`);
    const big = dt.size === 8 && dt.kind !== "f";
    for (let i = 0; i < n; i++) {
      let v = flat[i];
      if (typeof v === "boolean") v = v ? 1 : 0;
      if (dtype === "float16") arr[i] = toHalf(Number(v));
      else arr[i] = big ? BigInt(v) : Number(v);
    }
  }
  if (arr.length !== n) throw new TypeError(`tensor: expected ${n} elements for shape [${shape}], actual ${arr.length}`);
  if (dtype === "bool") for (let i = 0; i < n; i++) if (arr[i] > 1) throw new TypeError(`tensor: a bool tensor holds 0 or 1, actual ${arr[i]} at ${i}`);
  return new Tensor(dtype, [...shape], arr);
}
function inferShape(a) {
  const shape = [];
  while (Array.isArray(a)) {
    shape.push(a.length);
    a = a[0];
  }
  return shape;
}
function toHalf(v) {
  // float64 -> float16 bits, round to nearest even
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const e = (x >>> 23) & 0xff;
  let m = x & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  let ex = e - 127 + 15;
  if (ex >= 0x1f) return sign | 0x7c00;
  if (ex <= 0) {
    if (ex < -10) return sign;
    m |= 0x800000;
    const shift = 14 - ex;
    let h = m >> shift;
    const rem = m & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (ex << 10) | (m >> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}
function fromHalf(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** A number that travels as a MessagePack float even when it is integral (e.g. `rlay.float(1)`). */
export class Float {
  constructor(value) {
    this.value = Number(value);
  }
  valueOf() {
    return this.value;
  }
}
export function float(x) {
  return new Float(x);
}

// ---- encoding (sections 3-5, canonical) ----------------------------------------------------
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
    this.tensors = []; // [offset, Uint8Array]
    this.dataLen = 0;
  }
  need(n) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
    this.view = new DataView(b.buffer);
  }
  u8(x) {
    this.need(1);
    this.buf[this.len++] = x;
  }
  u8u8(a, b) {
    this.need(2);
    this.buf[this.len++] = a;
    this.buf[this.len++] = b;
  }
  u16(tag, x) {
    this.need(3);
    this.buf[this.len] = tag;
    this.view.setUint16(this.len + 1, x);
    this.len += 3;
  }
  u32(tag, x) {
    this.need(5);
    this.buf[this.len] = tag;
    this.view.setUint32(this.len + 1, x);
    this.len += 5;
  }
  raw(bytes) {
    this.need(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
  int(v) {
    // v: a safe integer number or a BigInt; the shortest family (section 5)
    if (typeof v === "number") {
      if (v >= 0) {
        if (v < 128) return this.u8(v);
        if (v < 256) return this.u8u8(0xcc, v);
        if (v < 65536) return this.u16(0xcd, v);
        if (v < 4294967296) return this.u32(0xce, v);
      } else {
        if (v >= -32) return this.u8(v & 0xff);
        if (v >= -128) return this.u8u8(0xd0, v & 0xff);
        if (v >= -32768) return this.u16(0xd1, v & 0xffff);
        if (v >= -2147483648) return this.u32(0xd2, v >>> 0);
      }
      v = BigInt(v);
    }
    if (v < -(2n ** 63n) || v >= 2n ** 64n) throw new TypeError(`int ${v} is outside -2^63 .. 2^64-1`);
    if (v >= 0n && v < 4294967296n) return this.int(Number(v));
    if (v < 0n && v >= -2147483648n) return this.int(Number(v));
    this.need(9);
    if (v >= 0n) {
      this.buf[this.len] = 0xcf;
      this.view.setBigUint64(this.len + 1, v);
    } else {
      this.buf[this.len] = 0xd3;
      this.view.setBigInt64(this.len + 1, v);
    }
    this.len += 9;
  }
  float(x) {
    this.need(9);
    this.buf[this.len] = 0xcb;
    this.view.setFloat64(this.len + 1, x);
    this.len += 9;
  }
  head(n, fix, fixMax, t8, t16, t32) {
    if (fix !== null && n <= fixMax) this.u8(fix | n);
    else if (t8 !== null && n < 256) this.u8u8(t8, n);
    else if (n < 65536) this.u16(t16, n);
    else this.u32(t32, n);
  }
  str(s) {
    const b = utf8.encode(s);
    this.head(b.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
    this.raw(b);
  }
  mapHead(n) {
    this.head(n, 0x80, 15, null, 0xde, 0xdf);
  }
  tensor(t) {
    const dt = DT.get(t.dtype);
    if (!dt) throw new TypeError(`unknown dtype ${t.dtype}`);
    const ndim = t.shape.length;
    if (ndim > MAX_NDIM) throw new TypeError(`a tensor has at most ${MAX_NDIM} dimensions, actual ${ndim}`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (bytes.length !== count * dt.size) throw new TypeError(`tensor ${t.dtype}[${t.shape}] needs ${count * dt.size} bytes, its data has ${bytes.length}`);
    let offset = 0;
    if (count > 0) {
      offset = (this.dataLen + 7) & ~7;
      this.tensors.push([offset, bytes]);
      this.dataLen = offset + bytes.length;
    }
    const n = 6 + 4 * ndim; // never 1/2/4/8/16: ext 8 (or 16 for 32 dims... 134 < 256)
    if (n < 256) this.u8u8(0xc7, n);
    else this.u16(0xc8, n);
    this.u8(1);
    this.need(n);
    this.buf[this.len] = dt.code;
    this.buf[this.len + 1] = ndim;
    for (let i = 0; i < ndim; i++) this.view.setUint32(this.len + 2 + 4 * i, t.shape[i], true);
    this.view.setUint32(this.len + 2 + 4 * ndim, offset, true);
    this.len += n;
  }
  value(v, depth = 1) {
    if (depth > MAX_DEPTH + 1) throw new TypeError(`values nest deeper than ${MAX_DEPTH}`);
    if (v === null) return this.u8(0xc0);
    switch (typeof v) {
      case "boolean":
        return this.u8(v ? 0xc3 : 0xc2);
      case "number":
        if (Number.isSafeInteger(v) && !Object.is(v, -0)) return this.int(v);
        return this.float(v);
      case "bigint":
        return this.int(v);
      case "string":
        return this.str(v);
      case "undefined":
        throw new TypeError("undefined is not an rlay value (use null)");
    }
    if (v instanceof Float) return this.float(v.value);
    if (Array.isArray(v)) {
      this.head(v.length, 0x90, 15, null, 0xdc, 0xdd);
      for (const x of v) this.value(x, depth + 1);
      return;
    }
    if (v instanceof Tensor) return this.tensor(v);
    if (v instanceof Uint8Array && v.constructor === Uint8Array) {
      this.head(v.length, null, 0, 0xc4, 0xc5, 0xc6);
      return this.raw(v);
    }
    if (v instanceof ArrayBuffer) return this.value(new Uint8Array(v), depth);
    if (ArrayBuffer.isView(v) && typedDtype(v)) return this.tensor(new Tensor(typedDtype(v), [v.length], v));
    if (v instanceof Map) {
      this.mapHead(v.size);
      for (const [k, x] of v) {
        if (typeof k !== "string") throw new TypeError(`map keys must be strings, actual ${typeof k}`);
        this.str(k);
        this.keyed(k, x, depth);
      }
      return;
    }
    const proto = typeof v === "object" ? Object.getPrototypeOf(v) : undefined;
    if (proto === Object.prototype || proto === null) {
      const keys = Object.keys(v);
      this.mapHead(keys.length);
      for (const k of keys) {
        this.str(k);
        this.keyed(k, v[k], depth);
      }
      return;
    }
    throw new TypeError(`${v?.constructor?.name ?? typeof v} is not an rlay value (expected null, a boolean, number, BigInt, string, Uint8Array, array, plain object, Map or rlay.Tensor)`);
  }
  keyed(k, x, depth) {
    try {
      this.value(x, depth + 1);
    } catch (e) {
      if (e instanceof TypeError) e.message = `[${JSON.stringify(k)}]: ${e.message}`;
      throw e;
    }
  }
  /** The whole frame: header, data section, body. */
  frame(kind) {
    const out = new Uint8Array(12 + this.dataLen + this.len);
    out.set([0x52, 0x4c, kind, 0]);
    const dv = new DataView(out.buffer);
    dv.setUint32(4, this.dataLen, true);
    dv.setUint32(8, this.len, true);
    for (const [off, bytes] of this.tensors) out.set(bytes, 12 + off);
    out.set(this.buf.subarray(0, this.len), 12 + this.dataLen);
    return out;
  }
}

/** Encodes one message (fields as a Map or object in canonical order) into a frame. */
export function encodeFrame(kind, fields) {
  const w = new Writer();
  w.value(fields);
  return w.frame(kind);
}

/** A BigInt as a Number when it is a safe integer (what env code sees), else the BigInt. */
function intOf(b) {
  return b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : b;
}

// ---- decoding (sections 3-4). Exact: maps are Maps, floats are Float, big ints BigInt ------
class Reader {
  constructor(body, data, maxValues = DEFAULT_MAX_VALUES) {
    this.values = 1; // the body's one value (section 3, value count)
    this.maxValues = maxValues;
    this.b = body;
    this.v = new DataView(body.buffer, body.byteOffset, body.byteLength);
    this.p = 0;
    this.data = data;
  }
  left() {
    return this.b.length - this.p;
  }
  take(n) {
    if (n > this.left()) fail(ErrorCode.MALFORMED, `a value declares ${n} bytes but only ${this.left()} remain in the body`);
    const p = this.p;
    this.p += n;
    return p;
  }
  u8() {
    return this.b[this.take(1)];
  }
  u16() {
    return this.v.getUint16(this.take(2));
  }
  u32() {
    return this.v.getUint32(this.take(4));
  }
  // Section 3's order at a container header: depth, declared count against the bytes that
  // remain, then the running value count (max_values, section 13), all before allocating.
  count(n, per, depth) {
    if (depth > MAX_DEPTH) fail(ErrorCode.TOO_DEEP, `values nest deeper than ${MAX_DEPTH}`);
    if (n * per > this.left()) fail(ErrorCode.MALFORMED, `a container declares ${n} items but only ${this.left()} bytes remain`);
    this.addValues(n * per);
    return n;
  }
  addValues(k) {
    this.values += k;
    if (this.values > this.maxValues) fail(ErrorCode.FRAME_TOO_LARGE, `the body declares more than max_values ${this.maxValues} values (section 13)`);
  }
  str(n) {
    const p = this.take(n);
    try {
      return utf8Strict.decode(this.b.subarray(p, p + n));
    } catch {
      fail(ErrorCode.MALFORMED, "a str is not valid UTF-8");
    }
  }
  value(depth) {
    const t = this.u8();
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 256;
    if (t <= 0x8f) return this.map(t & 15, depth);
    if (t <= 0x9f) return this.array(t & 15, depth);
    if (t <= 0xbf) return this.str(t & 31);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xc7: return this.ext(this.u8());
      case 0xc8: return this.ext(this.u16());
      case 0xc9: return this.ext(this.u32());
      case 0xca: return new Float(this.v.getFloat32(this.take(4)));
      case 0xcb: return new Float(this.v.getFloat64(this.take(8)));
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return intOf(this.v.getBigUint64(this.take(8)));
      case 0xd0: return this.v.getInt8(this.take(1));
      case 0xd1: return this.v.getInt16(this.take(2));
      case 0xd2: return this.v.getInt32(this.take(4));
      case 0xd3: return intOf(this.v.getBigInt64(this.take(8)));
      case 0xd4: return this.ext(1);
      case 0xd5: return this.ext(2);
      case 0xd6: return this.ext(4);
      case 0xd7: return this.ext(8);
      case 0xd8: return this.ext(16);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
    }
    fail(ErrorCode.MALFORMED, `byte 0x${t.toString(16)} does not start a value`);
  }
  bin(n) {
    const p = this.take(n);
    return this.b.slice(p, p + n);
  }
  array(n, depth) {
    this.count(n, 1, depth);
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }
  map(n, depth) {
    this.count(n, 2, depth);
    const out = new Map();
    for (let i = 0; i < n; i++) {
      const t = this.b[this.p];
      const k = this.value(depth + 1);
      if (typeof k !== "string") fail(ErrorCode.MALFORMED, `map keys must be str, actual ${describe(k)} (byte 0x${(t ?? 0).toString(16)})`);
      if (out.has(k)) fail(ErrorCode.MALFORMED, `duplicate map key ${JSON.stringify(k)}`);
      out.set(k, this.value(depth + 1));
    }
    return out;
  }
  ext(n) {
    if (n > this.left() - 1) fail(ErrorCode.MALFORMED, `an ext declares ${n} bytes but only ${this.left()} remain`);
    const type = this.v.getInt8(this.take(1));
    const p = this.take(n);
    if (type !== 1) fail(ErrorCode.MALFORMED, `ext type ${type} is not allowed (only 1, the tensor)`);
    this.addValues(7); // a tensor counts as 8 values (section 3)
    return this.tensor(p, n);
  }
  tensor(p, n) {
    if (n < 6) fail(ErrorCode.BAD_TENSOR, `a tensor descriptor has at least 6 bytes, actual ${n}`);
    // Section 4's order: length >= 6, ndim, exact length, dtype, offset, bounds, bool bytes.
    const code = this.b[p], ndim = this.b[p + 1];
    if (ndim > MAX_NDIM) fail(ErrorCode.BAD_TENSOR, `ndim ${ndim} > ${MAX_NDIM}`);
    if (n !== 6 + 4 * ndim) fail(ErrorCode.BAD_TENSOR, `a tensor descriptor of ndim ${ndim} has ${6 + 4 * ndim} bytes, actual ${n}`);
    const dt = DT_BY_CODE.get(code);
    if (!dt) fail(ErrorCode.UNKNOWN_DTYPE, `unknown dtype code ${code}`);
    const shape = [];
    let zero = false;
    for (let i = 0; i < ndim; i++) {
      const d = this.v.getUint32(p + 2 + 4 * i, true);
      if (d === 0) zero = true;
      shape.push(d);
    }
    const offset = this.v.getUint32(p + 2 + 4 * ndim, true);
    const dataLen = this.data.length;
    if (offset % 8) fail(ErrorCode.BAD_TENSOR, `tensor offset ${offset} is not a multiple of 8`);
    let count = 1;
    if (zero) count = 0;
    else {
      for (const d of shape) {
        count *= d;
        if (count * dt.size > dataLen) break; // stop before the product grows without bound
      }
    }
    const nbytes = count * dt.size;
    if (offset > dataLen || nbytes > dataLen - offset)
      fail(ErrorCode.BAD_TENSOR, `tensor bytes ${offset}..${offset + nbytes} are outside the data section of ${dataLen} bytes`);
    const start = this.data.byteOffset + offset;
    let arr;
    if (start % dt.size === 0) arr = new dt.Array(this.data.buffer, start, count);
    else {
      arr = new dt.Array(count); // misaligned (e.g. a WebSocket message): one copy
      new Uint8Array(arr.buffer).set(this.data.subarray(offset, offset + nbytes));
    }
    if (dt.name === "bool") for (let i = 0; i < count; i++) if (arr[i] > 1) fail(ErrorCode.BAD_TENSOR, `bool tensor byte ${i} is ${arr[i]}, not 0 or 1`);
    return new Tensor(dt.name, shape, arr);
  }
}

/** Decodes one body (and its data section) into an exact value tree. */
export function decodeValue(body, data = new Uint8Array(0), maxValues = DEFAULT_MAX_VALUES) {
  const r = new Reader(body, data, maxValues);
  const v = r.value(1);
  if (r.left()) fail(ErrorCode.MALFORMED, `${r.left()} bytes after the body's value`);
  return v;
}

function describe(v) {
  if (v === null) return "nil";
  if (typeof v === "boolean") return `bool ${v}`;
  if (typeof v === "number" || typeof v === "bigint") return `int ${v}`;
  if (v instanceof Float) return `float ${v.value}`;
  if (typeof v === "string") return `str ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v)}`;
  if (v instanceof Uint8Array) return `bytes of ${v.length}`;
  if (Array.isArray(v)) return `array of ${v.length}`;
  if (v instanceof Map) return `map with keys [${[...v.keys()].slice(0, 8).join(", ")}]`;
  if (v instanceof Tensor) return `${v.dtype} tensor [${v.shape}]`;
  return typeof v;
}

/** An exact value tree -> what env code sees: plain objects, numbers (floats unwrapped). */
export function toPlain(v) {
  if (v instanceof Float) return v.value;
  if (v instanceof Map) {
    const o = {};
    for (const [k, x] of v) {
      if (k === "__proto__") Object.defineProperty(o, k, { value: toPlain(x), enumerable: true, writable: true, configurable: true });
      else o[k] = toPlain(x);
    }
    return o;
  }
  if (Array.isArray(v)) return v.map(toPlain);
  return v;
}

// ---- framing (section 2) -------------------------------------------------------------------
/** Cuts a byte stream into frames. feed() chunks; frames queue as [kind, data, body]. */
export class FrameReader {
  /** handshakeMax: the smaller limit of the first frame (section 13), or null (stand-alone). */
  constructor(maxFrameSize = DEFAULT_MAX_FRAME_SIZE, handshakeMax = null) {
    this.max = maxFrameSize;
    this.handshakeMax = handshakeMax;
    this.head = new Uint8Array(12);
    this.have = 0; // header bytes held
    this.rest = null; // Uint8Array for data + body once the header is read
    this.restHave = 0;
    this.frames = [];
  }
  get partial() {
    return this.have > 0;
  }
  feed(chunk) {
    let i = 0;
    while (i < chunk.length) {
      if (this.have < 12) {
        const n = Math.min(12 - this.have, chunk.length - i);
        this.head.set(chunk.subarray(i, i + n), this.have);
        this.have += n;
        i += n;
        if (this.have >= 2 && (this.head[0] !== 0x52 || this.head[1] !== 0x4c)) {
          fail(ErrorCode.BAD_MAGIC, `the peer is not speaking rlay: its first bytes are ${hexBytes(this.head.subarray(0, this.have))}`);
        }
        if (this.have < 12) break;
        this.startFrame();
        if (this.rest === null) continue;
      }
      const n = Math.min(this.rest.length - this.restHave, chunk.length - i);
      this.rest.set(chunk.subarray(i, i + n), this.restHave);
      this.restHave += n;
      i += n;
      if (this.restHave === this.rest.length) this.endFrame();
    }
  }
  startFrame() {
    const h = this.head;
    const dv = new DataView(h.buffer);
    const dataLen = dv.getUint32(4, true), bodyLen = dv.getUint32(8, true);
    if (h[3] !== 0) fail(ErrorCode.BAD_HEADER, `flags byte is 0x${h[3].toString(16)}, expected 0`);
    if (bodyLen < 1) fail(ErrorCode.BAD_HEADER, "body_len is 0");
    if (dataLen + bodyLen > this.max) fail(ErrorCode.FRAME_TOO_LARGE, `a frame of ${dataLen + bodyLen} bytes exceeds max_frame_size ${this.max}`);
    if (this.handshakeMax !== null && dataLen + bodyLen > this.handshakeMax)
      fail(ErrorCode.FRAME_TOO_LARGE, `the first frame (${dataLen + bodyLen} bytes) exceeds max_handshake_frame_size ${this.handshakeMax}: a peer must say who it is first (section 13)`);
    if (!KIND_NAMES[h[2]]) fail(ErrorCode.UNKNOWN_KIND, `unknown message kind ${h[2]}`);
    this.rest = new Uint8Array(dataLen + bodyLen); // fresh: tensors at offset 0 are aligned
    this.restHave = 0;
    this.dataLen = dataLen;
  }
  endFrame() {
    this.handshakeMax = null; // only the first frame has the handshake limit
    const r = this.rest;
    this.frames.push([this.head[2], r.subarray(0, this.dataLen), r.subarray(this.dataLen)]);
    this.have = 0;
    this.rest = null;
  }
  feedEof() {
    if (this.have > 0) fail(ErrorCode.TRUNCATED, `the stream ended inside a frame (${this.have < 12 ? `${this.have} of 12 header bytes` : `${this.restHave} of ${this.rest.length} bytes after the header`})`);
  }
  /** One whole frame that fills a message (WebSocket): tensors are viewed in place when aligned. */
  feedMessage(msg) {
    if (this.have) fail(ErrorCode.TRUNCATED, "a partial frame before this message");
    if (msg.length < 12) {
      this.feed(msg);
      fail(ErrorCode.TRUNCATED, `a WebSocket message of ${msg.length} bytes holds no whole frame header`);
    }
    this.feed(msg.subarray(0, 12));
    const need = this.rest.length;
    if (msg.length - 12 !== need) fail(ErrorCode.TRUNCATED, `a WebSocket message holds ${msg.length - 12} bytes after the header, the frame declares ${need}`);
    this.frames.push([this.head[2], msg.subarray(12, 12 + this.dataLen), msg.subarray(12 + this.dataLen)]);
    this.handshakeMax = null;
    this.have = 0;
    this.rest = null;
  }
}
function hexBytes(b) {
  return [...b.subarray(0, 8)].map((x) => x.toString(16).padStart(2, "0")).join(" ");
}

// ---- messages (section 6) ------------------------------------------------------------------
const isInt = (v) => typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v));
const isFloatLike = (v) => v instanceof Float || isInt(v);
const isMap = (v) => v instanceof Map;
const isStr = (v) => typeof v === "string";
const orNil = (f) => (v) => v === null || f(v);
const any = () => true;
const is1d = (dtype) => (v) => v instanceof Tensor && v.dtype === dtype && v.shape.length === 1;
// seed: nil, an int in 0 .. 2^64-1 (section 6), or (sub-envs, section 10) an array of int/nil.
const isSeedInt = (v) => isInt(v) && v >= 0;
const isSeed = (v) => v === null || isSeedInt(v) || (Array.isArray(v) && v.every((s) => s === null || isSeedInt(s)));
const isProtocolCode = (c) => isInt(c) && c >= 1 && c <= 15; // always fatal (sections 6, 11)

const MESSAGES = {
  [Kind.HELLO]: { sender: "both", fields: [["protocol", isStr], ["version", isInt], ["role", isStr], ["sdk", isStr], ["sdk_version", isStr], ["capabilities", isMap]] },
  [Kind.ENV_INFO]: { sender: "env", fields: [["observation_space", isMap], ["action_space", isMap], ["num_envs", (v) => isInt(v) && v >= 1], ["metadata", isMap], ["render_mode", orNil(isStr)], ["name", orNil(isStr)]] },
  [Kind.RESET]: { sender: "agent", fields: [["seed", isSeed], ["options", orNil(isMap)]] },
  [Kind.STEP]: { sender: "agent", fields: [["action", any]] },
  [Kind.RENDER]: { sender: "agent", fields: [] },
  [Kind.CLOSE]: { sender: "agent", fields: [] },
  [Kind.CALL]: { sender: "agent", fields: [["name", isStr], ["args", Array.isArray], ["kwargs", isMap]] },
  [Kind.RESET_RESULT]: { sender: "env", fields: [["obs", any], ["info", isMap]] },
  [Kind.STEP_RESULT]: { sender: "env", fields: [["obs", any], ["reward", (v) => isFloatLike(v) || is1d("float64")(v)], ["terminated", (v) => typeof v === "boolean" || is1d("bool")(v)], ["truncated", (v) => typeof v === "boolean" || is1d("bool")(v)], ["info", isMap]] },
  [Kind.RENDER_RESULT]: { sender: "env", fields: [["frame", any]] },
  [Kind.CLOSE_RESULT]: { sender: "env", fields: [] },
  [Kind.CALL_RESULT]: { sender: "env", fields: [["value", any]] },
  [Kind.ERROR]: { sender: "both", fields: [["code", (v) => isInt(v) && v >= 1 && v <= 2147483647], ["message", isStr], ["fatal", (v) => typeof v === "boolean"], ["remote_type", orNil(isStr)], ["traceback", orNil(isStr)]] },
};

/** Checks a decoded body against its kind's fields (BAD_FIELD); returns the fields, canonical order. */
export function checkFields(kind, body) {
  const name = KIND_NAMES[kind];
  if (!(body instanceof Map)) fail(ErrorCode.BAD_FIELD, `${name}: the body must be a map, actual ${describe(body)}`);
  const spec = MESSAGES[kind];
  const out = new Map();
  for (const [f, ok] of spec.fields) {
    if (!body.has(f)) fail(ErrorCode.BAD_FIELD, `${name}: missing field '${f}'`);
    const v = body.get(f);
    if (!ok(v)) fail(ErrorCode.BAD_FIELD, `${name}: field '${f}' has the wrong type: ${describe(v)}`);
    out.set(f, v);
  }
  for (const k of body.keys()) if (!out.has(k)) fail(ErrorCode.BAD_FIELD, `${name}: unknown field '${k}'`);
  if (kind === Kind.ENV_INFO) {
    out.set("observation_space", parseSpace(out.get("observation_space"), "observation_space"));
    out.set("action_space", parseSpace(out.get("action_space"), "action_space"));
    const mode = out.get("metadata").get("autoreset_mode");
    if (mode !== undefined && !["next_step", "same_step", "disabled"].includes(mode))
      fail(ErrorCode.BAD_FIELD, `ENV_INFO: metadata.autoreset_mode ${describe(mode)} is not next_step, same_step or disabled`);
  }
  if (kind === Kind.STEP_RESULT && out.get("reward") instanceof Tensor === false && !(out.get("reward") instanceof Float)) {
    out.set("reward", new Float(Number(out.get("reward")))); // a float field accepts an int (section 5)
  }
  return out;
}

/** Canonical body of a message whose fields were checked (spaces re-described). */
export function canonicalFields(kind, fields) {
  if (kind !== Kind.ENV_INFO) return fields;
  const out = new Map(fields);
  out.set("observation_space", fields.get("observation_space").toWire());
  out.set("action_space", fields.get("action_space").toWire());
  return out;
}

// ---- state machine (section 8): one table for both roles ----------------------------------
// STATES[state][kind] = [sender, next]; ERROR is handled apart because `fatal` decides.
const TABLE = {
  hello: { [Kind.HELLO]: ["peer", "describe"] },
  describe: { [Kind.ENV_INFO]: ["env", "idle"] },
  idle: { [Kind.RESET]: ["agent", "reset"], [Kind.STEP]: ["agent", "step"], [Kind.RENDER]: ["agent", "render"], [Kind.CALL]: ["agent", "call"], [Kind.CLOSE]: ["agent", "close"] },
  reset: { [Kind.RESET_RESULT]: ["env", "idle"] },
  step: { [Kind.STEP_RESULT]: ["env", "idle"] },
  render: { [Kind.RENDER_RESULT]: ["env", "idle"] },
  call: { [Kind.CALL_RESULT]: ["env", "idle"] },
  close: { [Kind.CLOSE_RESULT]: ["env", "closed"] },
  closed: {},
};
export const STATES = Object.keys(TABLE);

/**
 * The protocol core, no I/O (as python-websockets' Protocol): receiveData(bytes) /
 * receiveEof(), then nextEvent() until null; send(kind, fields) returns the frame to write.
 * It plays either role; an illegal message is UNEXPECTED_MESSAGE naming the state.
 */
export class Connection {
  /**
   * state/numEnvs: start past the handshake (the section 12 runner); numEnvs is otherwise
   * learnt from the ENV_INFO sent or received. The first frame received in state `hello` has
   * the handshake limit; every body the max_values limit (section 13).
   */
  constructor(role, { maxFrameSize = DEFAULT_MAX_FRAME_SIZE, maxHandshakeFrameSize = DEFAULT_MAX_HANDSHAKE_FRAME_SIZE, maxValues = DEFAULT_MAX_VALUES, state = "hello", numEnvs = 1 } = {}) {
    if (role !== "env" && role !== "agent") throw new TypeError(`role is "env" or "agent", actual ${role}`);
    this.role = role;
    this.peer = role === "env" ? "agent" : "env";
    this.state = state;
    this.numEnvs = numEnvs;
    this.maxValues = maxValues;
    this.reader = new FrameReader(maxFrameSize, state === "hello" ? maxHandshakeFrameSize : null);
    this.events = [];
    this.peerHello = null;
    this.eof = false;
  }
  receiveData(chunk) {
    this.reader.feed(chunk);
    this.drain();
  }
  receiveMessage(msg) {
    this.reader.feedMessage(msg);
    this.drain();
  }
  receiveEof() {
    this.reader.feedEof();
    this.eof = true;
  }
  drain() {
    while (this.reader.frames.length) {
      const [kind, data, body] = this.reader.frames.shift();
      this.events.push(this.receiveFrame(kind, decodeValue(body, data, this.maxValues)));
    }
  }
  /** The next received message {kind, name, fields}, or null. */
  nextEvent() {
    return this.events.shift() ?? null;
  }
  /** Where a vanished peer leaves us: null if the end of stream is orderly here (section 8). */
  eofProblem() {
    if (this.state === "closed" || (this.role === "env" && this.state === "idle")) return null;
    return new PeerClosedError(`connection closed by peer in state ${this.state}`);
  }
  receiveFrame(kind, body) {
    const name = KIND_NAMES[kind];
    if (kind === Kind.ERROR) {
      const f = checkFields(kind, body);
      const fatal = f.get("fatal") || isProtocolCode(f.get("code")); // codes 1-15: fatal whatever it says
      if (fatal && this.state !== "closed") this.state = "closed";
      else if (!fatal && this.peer === "env" && ["reset", "step", "render", "call"].includes(this.state)) this.state = "idle";
      else if (!fatal && this.peer === "env" && this.state === "close") this.state = "closed";
      else fail(ErrorCode.UNEXPECTED_MESSAGE, `${fatal ? "a fatal" : "a non-fatal"} ERROR is not allowed in state ${this.state}`);
      return { kind, name, fields: f };
    }
    const row = TABLE[this.state][kind];
    const sender = MESSAGES[kind].sender;
    const ok = row && (row[0] === "peer" ? true : row[0] === this.peer) && (sender === "both" || sender === this.peer);
    if (!ok) fail(ErrorCode.UNEXPECTED_MESSAGE, `${name} from the ${this.peer} is not allowed in state ${this.state}`);
    if (kind === Kind.HELLO) this.checkHello(body);
    const f = checkFields(kind, body);
    this.checkBatched(kind, f);
    this.state = row[1];
    if (kind === Kind.HELLO) this.peerHello = f;
    if (kind === Kind.ENV_INFO) this.numEnvs = Number(f.get("num_envs"));
    return { kind, name, fields: f };
  }
  /** Section 10: the fields whose type depends on the session's num_envs (BAD_FIELD). */
  checkBatched(kind, f) {
    const n = this.numEnvs, name = KIND_NAMES[kind];
    const bad = (msg) => fail(ErrorCode.BAD_FIELD, `${name}: ${msg} (num_envs ${n}, section 10)`);
    const vec = (v, dtype) => v instanceof Tensor && v.dtype === dtype && v.shape.length === 1 && v.shape[0] === n;
    if (kind === Kind.STEP_RESULT) {
      for (const [k, dt] of [["reward", "float64"], ["terminated", "bool"], ["truncated", "bool"]]) {
        const v = f.get(k);
        if (n === 1 && v instanceof Tensor) bad(`${k} is a tensor, expected a plain ${dt === "bool" ? "bool" : "float"}`);
        if (n > 1 && !vec(v, dt)) bad(`${k} must be a ${dt} tensor (${n},), actual ${describe(v)}`);
      }
    } else if (kind === Kind.CALL_RESULT && n > 1) {
      const v = f.get("value");
      if (!Array.isArray(v) || v.length !== n) bad(`value must be an array of ${n} values, one per sub-env, actual ${describe(v)}`);
    } else if (kind === Kind.RENDER_RESULT && n > 1) {
      const v = f.get("frame");
      if (v !== null && (!Array.isArray(v) || v.length !== n)) bad(`frame must be nil or an array of ${n} frames, actual ${describe(v)}`);
    } else if (kind === Kind.RESET) {
      const seed = f.get("seed");
      if (Array.isArray(seed)) {
        if (n === 1) bad("seed is an array, but this env side hosts one env");
        if (seed.length !== n) bad(`seed is an array of ${seed.length}, expected ${n} entries`);
      } else if (seed !== null && BigInt(seed) + BigInt(n - 1) > 0xffffffffffffffffn) {
        bad(`seed ${seed} + ${n - 1} overflows 2^64-1`);
      }
      const opts = f.get("options");
      const mask = opts instanceof Map ? opts.get("reset_mask") : undefined;
      if (n > 1 && mask !== undefined && mask !== null && !vec(mask, "bool")) bad(`options.reset_mask must be a bool tensor (${n},), actual ${describe(mask)}`);
    }
  }
  checkHello(body) {
    if (!(body instanceof Map)) fail(ErrorCode.BAD_FIELD, `HELLO: the body must be a map, actual ${describe(body)}`);
    const p = body.get("protocol");
    if (p !== "rlay") fail(ErrorCode.BAD_MAGIC, `the peer is not speaking rlay: HELLO.protocol is ${describe(p ?? null)}`);
    const v = body.get("version");
    if (!(isInt(v) && Number(v) === PROTOCOL_VERSION && typeof v !== "bigint"))
      fail(ErrorCode.VERSION_MISMATCH, `protocol version mismatch: this side speaks ${PROTOCOL_VERSION}, peer speaks ${v === undefined ? "nothing" : v instanceof Float ? v.value : typeof v === "string" ? JSON.stringify(v) : v}`);
    const r = body.get("role");
    if (r !== this.peer) fail(ErrorCode.ROLE_CONFLICT, `the peer's role is ${describe(r ?? null)}, expected "${this.peer}" (this side is the ${this.role})`);
  }
  /** The frame for an outgoing message; advances the state (throws on an illegal send). */
  send(kind, fields) {
    if (kind === Kind.HELLO) return encodeFrame(kind, fields);
    if (kind === Kind.ERROR) {
      if (isProtocolCode(fields.get("code")) && !fields.get("fatal")) throw new RlayError(null, `an ERROR with code ${fields.get("code")} (1-15) must be fatal (section 11)`);
      if (fields.get("fatal")) this.state = "closed";
      else if (this.role === "env" && ["reset", "step", "render", "call"].includes(this.state)) this.state = "idle";
      else if (this.role === "env" && this.state === "close") this.state = "closed";
      else throw new RlayError(null, `a non-fatal ERROR cannot be sent in state ${this.state}`);
      return encodeFrame(kind, fields);
    }
    const row = TABLE[this.state][kind];
    if (!row || row[0] !== this.role) throw new RlayError(null, `cannot send ${KIND_NAMES[kind]} in state ${this.state}`);
    const frame = encodeFrame(kind, fields); // a value that cannot be encoded throws here: no state change
    this.state = row[1];
    if (kind === Kind.ENV_INFO) this.numEnvs = Number(fields.get("num_envs"));
    return frame;
  }
}

export function helloFields(role) {
  return new Map([["protocol", "rlay"], ["version", PROTOCOL_VERSION], ["role", role], ["sdk", SDK_NAME], ["sdk_version", SDK_VERSION], ["capabilities", new Map()]]);
}
export function errorFields(code, message, fatal, remoteType = null, traceback = null) {
  // A code 1-15 is always fatal (section 11): a sender sets fatal=true with it.
  return new Map([["code", code], ["message", String(message)], ["fatal", !!fatal || isProtocolCode(code)], ["remote_type", remoteType], ["traceback", traceback]]);
}

// ---- spaces (section 9) --------------------------------------------------------------------
const SPACE_FIELDS = {
  box: ["dtype", "shape", "low", "high"],
  discrete: ["n", "start", "dtype"],
  multi_discrete: ["nvec", "start"],
  multi_binary: ["n"],
  text: ["min_length", "max_length", "charset"],
  dict: ["spaces"],
  tuple: ["spaces"],
  sequence: ["space", "stack"],
  graph: ["node_space", "edge_space"],
  one_of: ["spaces"],
};
const DEFAULT_CHARSET = [..."0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"].join("");

/** A space of section 9. Build one with box(), discrete(), ... or parse a descriptor. */
export class Space {
  constructor(kind, f) {
    this.kind = kind;
    Object.assign(this, f);
  }
  /** The canonical descriptor (a Map in section 9's field order). */
  toWire() {
    const m = new Map([["kind", this.kind]]);
    switch (this.kind) {
      case "box": return m.set("dtype", this.dtype).set("shape", this.shape).set("low", this.low).set("high", this.high);
      case "discrete": return m.set("n", this.n).set("start", this.start).set("dtype", this.dtype);
      case "multi_discrete": return m.set("nvec", this.nvec).set("start", this.start);
      case "multi_binary": return m.set("n", this.n);
      case "text": return m.set("min_length", this.minLength).set("max_length", this.maxLength).set("charset", this.charset);
      case "dict": return m.set("spaces", new Map([...this.spaces].map(([k, s]) => [k, s.toWire()])));
      case "tuple":
      case "one_of": return m.set("spaces", this.spaces.map((s) => s.toWire()));
      case "sequence": return m.set("space", this.space.toWire()).set("stack", this.stack);
      case "graph": return m.set("node_space", this.nodeSpace.toWire()).set("edge_space", this.edgeSpace ? this.edgeSpace.toWire() : null);
    }
  }
  get shapeOf() {
    if (this.kind === "box") return this.shape;
    if (this.kind === "multi_discrete") return this.nvec.shape;
    if (this.kind === "multi_binary") return typeof this.n === "number" ? [this.n] : this.n;
    if (this.kind === "discrete") return [];
    return null;
  }
}

function badSpace(where, msg) {
  fail(ErrorCode.BAD_SPACE, `${where}: ${msg}`);
}
function tensorNumbers(t) {
  // elements as Numbers (or BigInts for 64-bit ints), float16 decoded
  if (t.dtype === "float16") return Array.from(t.data, fromHalf);
  return Array.from(t.data);
}
function cmpLE(a, b) {
  return typeof a === "bigint" || typeof b === "bigint" ? BigInt(a) <= BigInt(b) : a <= b;
}

/** A received descriptor (exact tree) -> Space; BAD_SPACE / UNKNOWN_DTYPE on a bad one. */
export function parseSpace(d, where = "space", depth = 0) {
  if (depth > MAX_DEPTH) fail(ErrorCode.TOO_DEEP, `${where}: spaces nested deeper than ${MAX_DEPTH}`);
  if (!(d instanceof Map)) badSpace(where, `expected a space descriptor (a map), actual ${describe(d)}`);
  const kind = d.get("kind");
  if (typeof kind !== "string" || !SPACE_FIELDS[kind]) badSpace(where, `kind ${describe(kind ?? null)} is not one of ${Object.keys(SPACE_FIELDS).join(", ")}`);
  const fields = SPACE_FIELDS[kind];
  for (const f of fields) if (!d.has(f)) badSpace(where, `missing field '${f}' of a ${kind} space`);
  for (const k of d.keys()) if (k !== "kind" && !fields.includes(k)) badSpace(where, `unknown field '${k}' in a ${kind} space`);
  const g = (f) => d.get(f);
  const dtypeOf = (integer) => {
    const name = g("dtype");
    if (typeof name !== "string") badSpace(`${where}.dtype`, `expected a dtype name, actual ${describe(name)}`);
    if (!DT.has(name)) fail(ErrorCode.UNKNOWN_DTYPE, `${where}.dtype: unknown dtype ${JSON.stringify(name)}`);
    if (integer && !"iu".includes(DT.get(name).kind)) badSpace(`${where}.dtype`, `expected an integer dtype, actual ${name}`);
    return name;
  };
  const intField = (f, min) => {
    const v = g(f);
    if (!isInt(v)) badSpace(`${where}.${f}`, `expected an int, actual ${describe(v)}`);
    if (min !== undefined && v < min) badSpace(`${where}.${f}`, `expected an int >= ${min}, actual ${v}`);
    return v;
  };
  const tensorField = (f, dtype, shape) => {
    const t = g(f);
    if (!(t instanceof Tensor) || (dtype && t.dtype !== dtype) || (shape && !sameShape(t.shape, shape)))
      badSpace(`${where}.${f}`, `expected a ${dtype ?? "integer"} tensor of shape [${shape ?? "any"}], actual ${describe(t)}`);
    return t;
  };
  switch (kind) {
    case "box": {
      const dtype = dtypeOf(false);
      const shape = g("shape");
      if (!Array.isArray(shape) || shape.length > MAX_NDIM || !shape.every((x) => isInt(x) && x >= 0 && typeof x === "number"))
        badSpace(`${where}.shape`, `expected an array of ints >= 0, actual ${describe(shape)}`);
      const low = tensorField("low", dtype, shape), high = tensorField("high", dtype, shape);
      const lo = tensorNumbers(low), hi = tensorNumbers(high);
      for (let i = 0; i < lo.length; i++) {
        if (Number.isNaN(lo[i]) || Number.isNaN(hi[i])) badSpace(where, `a bound is NaN at element ${i}`);
        if (!cmpLE(lo[i], hi[i])) badSpace(where, `expected low <= high everywhere, actual low ${lo[i]} > high ${hi[i]} at element ${i}`);
      }
      return new Space("box", { dtype, shape: [...shape], low, high });
    }
    case "discrete": {
      const n = intField("n", 1), start = intField("start");
      const dtype = dtypeOf(true);
      const [lo, hi] = INT_RANGE[dtype];
      for (const [f, v] of [["n", n], ["start", start]]) if (BigInt(v) < lo || BigInt(v) > hi) badSpace(`${where}.${f}`, `expected an int in the ${dtype} range, actual ${v}`);
      // section 9: the last value start + n - 1 fits the dtype too (a uint64 start may pass 2^63)
      if (BigInt(start) + BigInt(n) - 1n > hi) badSpace(where, `the last value start + n - 1 = ${BigInt(start) + BigInt(n) - 1n} is outside the ${dtype} range`);
      return new Space("discrete", { n, start, dtype });
    }
    case "multi_discrete": {
      const nvec = g("nvec");
      if (!(nvec instanceof Tensor) || !"iu".includes(DT.get(nvec.dtype).kind)) badSpace(`${where}.nvec`, `expected an integer tensor, actual ${describe(nvec)}`);
      const start = tensorField("start", nvec.dtype, nvec.shape);
      for (const x of nvec.data) if (x < 1) badSpace(`${where}.nvec`, `expected every count >= 1, actual ${x}`);
      return new Space("multi_discrete", { nvec, start });
    }
    case "multi_binary": {
      const n = g("n");
      if (isInt(n) && typeof n === "number" && n >= 1) return new Space("multi_binary", { n });
      if (Array.isArray(n) && n.length <= MAX_NDIM && n.every((x) => typeof x === "number" && isInt(x) && x >= 1)) return new Space("multi_binary", { n: [...n] });
      return badSpace(`${where}.n`, `expected an int >= 1 or an array of ints >= 1, actual ${describe(n)}`);
    }
    case "text": {
      const minLength = intField("min_length", 0), maxLength = intField("max_length", 0);
      if (minLength > maxLength) badSpace(where, `expected min_length <= max_length, actual ${minLength} > ${maxLength}`);
      const charset = g("charset");
      if (typeof charset !== "string") badSpace(`${where}.charset`, `expected a str, actual ${describe(charset)}`);
      const cps = [...charset].map((c) => c.codePointAt(0));
      for (let i = 1; i < cps.length; i++) if (cps[i - 1] >= cps[i]) badSpace(`${where}.charset`, "expected each character once, in ascending code-point order");
      return new Space("text", { minLength: Number(minLength), maxLength: Number(maxLength), charset });
    }
    case "dict": {
      const s = g("spaces");
      if (!(s instanceof Map)) badSpace(`${where}.spaces`, `expected a map of str to space, actual ${describe(s)}`);
      return new Space("dict", { spaces: new Map([...s].map(([k, v]) => [k, parseSpace(v, `${where}.spaces[${JSON.stringify(k)}]`, depth + 1)])) });
    }
    case "tuple":
    case "one_of": {
      const s = g("spaces");
      if (!Array.isArray(s) || (kind === "one_of" && !s.length)) badSpace(`${where}.spaces`, `expected ${kind === "one_of" ? "a non-empty " : "an "}array of spaces, actual ${describe(s)}`);
      return new Space(kind, { spaces: s.map((x, i) => parseSpace(x, `${where}.spaces[${i}]`, depth + 1)) });
    }
    case "sequence": {
      const stack = g("stack");
      if (typeof stack !== "boolean") badSpace(`${where}.stack`, `expected a bool, actual ${describe(stack)}`);
      return new Space("sequence", { space: parseSpace(g("space"), `${where}.space`, depth + 1), stack });
    }
    case "graph": {
      const part = (f, nil) => {
        const s = g(f);
        if (s === null && nil) return null;
        const k = s instanceof Map ? s.get("kind") : undefined;
        if (k !== "box" && k !== "discrete") badSpace(`${where}.${f}`, `expected a 'box' or 'discrete' space${nil ? " or nil" : ""}, actual ${describe(s)}`);
        return parseSpace(s, `${where}.${f}`, depth + 1);
      };
      return new Space("graph", { nodeSpace: part("node_space", false), edgeSpace: part("edge_space", true) });
    }
  }
}
function sameShape(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// -- builders (what env code declares) --
function fillBound(dtype, shape, v) {
  const n = shape.reduce((a, b) => a * b, 1);
  const dt = DT.get(dtype);
  if (v instanceof Tensor) return v;
  if (ArrayBuffer.isView(v) || Array.isArray(v)) return tensor(dtype, shape, v);
  let x = v;
  if (dt.kind !== "f" && !Number.isFinite(Number(x))) {
    // section 9: integer bounds of +-inf become the dtype's limits
    const [lo, hi] = INT_RANGE[dtype];
    x = x > 0 ? hi : lo;
  }
  return tensor(dtype, shape, new Array(n).fill(dt.size === 8 && dt.kind !== "f" ? BigInt(x) : Number(x)));
}
/** Box(low, high, shape, dtype): low/high a number (every element) or an array/typed array. */
export function box({ low, high, shape, dtype = "float32" }) {
  if (!DT.has(dtype)) throw new TypeError(`box: unknown dtype ${dtype}`);
  if (shape == null) shape = ArrayBuffer.isView(low) || Array.isArray(low) ? inferShape(Array.isArray(low) ? low : [...low]) : low instanceof Tensor ? low.shape : [];
  return new Space("box", { dtype, shape: [...shape], low: fillBound(dtype, shape, low), high: fillBound(dtype, shape, high) });
}
export function discrete(n, { start = 0, dtype = "int64" } = {}) {
  return new Space("discrete", { n, start, dtype });
}
export function multiDiscrete(nvec, { start = null, dtype = "int64" } = {}) {
  const t = nvec instanceof Tensor ? nvec : tensor(dtype, null, nvec);
  const s = start == null ? fillBound(t.dtype, t.shape, 0) : start instanceof Tensor ? start : tensor(t.dtype, t.shape, start);
  return new Space("multi_discrete", { nvec: t, start: s });
}
export function multiBinary(n) {
  return new Space("multi_binary", { n: Array.isArray(n) ? [...n] : n });
}
export function text(maxLength, { minLength = 1, charset = DEFAULT_CHARSET } = {}) {
  const sorted = [...new Set([...charset])].sort((a, b) => a.codePointAt(0) - b.codePointAt(0)).join("");
  return new Space("text", { minLength, maxLength, charset: sorted });
}
export function dict(spaces) {
  return new Space("dict", { spaces: new Map(spaces instanceof Map ? spaces : Array.isArray(spaces) ? spaces : Object.entries(spaces)) });
}
export function tuple(spaces) {
  return new Space("tuple", { spaces: [...spaces] });
}
export function sequence(space, { stack = false } = {}) {
  return new Space("sequence", { space, stack });
}
export function graph(nodeSpace, edgeSpace = null) {
  return new Space("graph", { nodeSpace, edgeSpace });
}
export function oneOf(spaces) {
  return new Space("one_of", { spaces: [...spaces] });
}

/** Gymnasium's batch_space(space, n) (section 10). */
export function batchSpace(space, n) {
  switch (space.kind) {
    case "box": {
      const rep = (t) => {
        const out = new (DT.get(t.dtype).Array)(t.data.length * n);
        for (let i = 0; i < n; i++) out.set(t.data, i * t.data.length);
        return new Tensor(t.dtype, [n, ...t.shape], out);
      };
      return new Space("box", { dtype: space.dtype, shape: [n, ...space.shape], low: rep(space.low), high: rep(space.high) });
    }
    case "discrete": {
      const dt = DT.get(space.dtype);
      const big = dt.size === 8;
      const mk = (v) => new Tensor(space.dtype, [n], new dt.Array(n).fill(big ? BigInt(v) : Number(v)));
      return new Space("multi_discrete", { nvec: mk(space.n), start: mk(space.start) });
    }
    case "multi_discrete": {
      const b = batchSpace(new Space("box", { dtype: space.nvec.dtype, shape: space.nvec.shape, low: space.nvec, high: space.start }), n);
      return new Space("multi_discrete", { nvec: b.low, start: b.high });
    }
    case "multi_binary": {
      const shape = [n, ...space.shapeOf];
      return box({ low: 0, high: 1, shape, dtype: "int8" });
    }
    case "dict": return new Space("dict", { spaces: new Map([...space.spaces].map(([k, s]) => [k, batchSpace(s, n)])) });
    case "tuple": return new Space("tuple", { spaces: space.spaces.map((s) => batchSpace(s, n)) });
    default: return new Space("tuple", { spaces: new Array(n).fill(space) });
  }
}

// -- values against spaces --
function badValue(where, expected, v) {
  fail(ErrorCode.BAD_VALUE, `${where}: expected ${expected}, actual ${describe(v)}`);
}
/** A received wire value (exact tree) checked for structure (BAD_VALUE) -> the value env code sees. */
export function fromWire(space, v, where = "value") {
  switch (space.kind) {
    case "box":
    case "multi_discrete":
    case "multi_binary": {
      const dtype = space.kind === "box" ? space.dtype : space.kind === "multi_discrete" ? space.nvec.dtype : "int8";
      const shape = space.shapeOf;
      if (!(v instanceof Tensor) || v.dtype !== dtype || !sameShape(v.shape, shape)) badValue(where, `a ${dtype} tensor of shape [${shape}]`, v);
      return v;
    }
    case "discrete": {
      const [lo, hi] = INT_RANGE[space.dtype];
      if (isInt(v) && BigInt(v) >= lo && BigInt(v) <= hi) return v;
      if (v instanceof Tensor && v.shape.length === 0 && "iu".includes(DT.get(v.dtype).kind)) {
        const x = v.data[0];
        return typeof x === "bigint" ? intOf(x) : x;
      }
      return badValue(where, `an int in the ${space.dtype} range (or a 0-d integer tensor)`, v);
    }
    case "text":
      if (typeof v !== "string") badValue(where, "a str", v);
      return v;
    case "dict": {
      if (!(v instanceof Map)) badValue(where, `a map with the keys [${[...space.spaces.keys()]}]`, v);
      const out = {};
      for (const k of v.keys()) if (!space.spaces.has(k)) fail(ErrorCode.BAD_VALUE, `${where}: unexpected key ${JSON.stringify(k)}`);
      for (const [k, s] of space.spaces) {
        if (!v.has(k)) fail(ErrorCode.BAD_VALUE, `${where}: missing key ${JSON.stringify(k)}`);
        out[k] = fromWire(s, v.get(k), `${where}[${JSON.stringify(k)}]`);
      }
      return out;
    }
    case "tuple":
      if (!Array.isArray(v) || v.length !== space.spaces.length) badValue(where, `an array of ${space.spaces.length} values`, v);
      return v.map((x, i) => fromWire(space.spaces[i], x, `${where}[${i}]`));
    case "sequence":
      if (!Array.isArray(v)) badValue(where, "an array of values", v);
      return v.map((x, i) => fromWire(space.space, x, `${where}[${i}]`));
    case "one_of": {
      if (!Array.isArray(v) || v.length !== 2 || !isInt(v[0]) || v[0] < 0 || v[0] >= space.spaces.length)
        badValue(where, `an array [index, value] with an index in [0, ${space.spaces.length - 1}]`, v);
      return [Number(v[0]), fromWire(space.spaces[v[0]], v[1], `${where}[1]`)];
    }
    case "graph": {
      if (!(v instanceof Map) || v.size !== 3 || !v.has("nodes") || !v.has("edges") || !v.has("edge_links")) badValue(where, "a map with the keys nodes, edges, edge_links", v);
      const rows = (s, x, w) => {
        const tail = s.kind === "box" ? s.shape : [];
        if (!(x instanceof Tensor) || x.dtype !== s.dtype || x.shape.length !== tail.length + 1 || !sameShape(x.shape.slice(1), tail)) badValue(w, `a ${s.dtype} tensor of shape [m, ${tail}]`, x);
        return x;
      };
      const nodes = rows(space.nodeSpace, v.get("nodes"), `${where}.nodes`);
      const edges = v.get("edges"), links = v.get("edge_links");
      if (edges === null && links === null) return { nodes, edges: null, edgeLinks: null };
      if (!space.edgeSpace || edges === null || links === null) badValue(where, "edges and edge_links both nil or both tensors", v);
      rows(space.edgeSpace, edges, `${where}.edges`);
      // int64 or int32 links (Gymnasium's Graph.sample() builds int32), kept as received (section 9)
      rows({ kind: "box", dtype: links instanceof Tensor && links.dtype === "int32" ? "int32" : "int64", shape: [2] }, links, `${where}.edge_links`);
      if (edges.shape[0] !== links.shape[0]) badValue(where, "one edge_links row per edge", links);
      return { nodes, edges, edgeLinks: links };
    }
  }
}

/**
 * Section 9, "an env side's own observations": a converted array is sent only when every element
 * converted exactly (NaN to NaN); otherwise the env code gets a TypeError (ENV_EXCEPTION) naming
 * the element, never a rounded value.
 */
function checkExact(t, given, where) {
  if (t.data === given) return;
  const flat = Array.isArray(given) ? given.flat(Infinity) : given;
  for (let i = 0; i < flat.length; i++) {
    let g = flat[i];
    if (typeof g === "boolean") g = g ? 1 : 0;
    const got = t.dtype === "float16" ? fromHalf(t.data[i]) : t.data[i];
    let same;
    if (typeof got === "bigint") same = (typeof g === "bigint" || Number.isInteger(g)) && BigInt(g) === got;
    else if (typeof g === "bigint") same = BigInt.asIntN(64, g) === g && Number(g) === got && BigInt(got) === g;
    else same = Object.is(got, Number(g)) || (Number.isNaN(got) && Number.isNaN(Number(g))) || (got === 0 && Number(g) === 0);
    if (!same) throw new TypeError(`${where}: element ${i} is ${String(g)}, which is not exactly a ${t.dtype} (the nearest is ${String(got)}); an observation is never rounded: convert it yourself (e.g. Math.fround or a typed array)`);
  }
}

/** A value env code gives (flexible: typed arrays, plain arrays, numbers) -> its wire value. */
export function toWire(space, v, where = "obs") {
  switch (space.kind) {
    case "box":
    case "multi_discrete":
    case "multi_binary": {
      const dtype = space.kind === "box" ? space.dtype : space.kind === "multi_discrete" ? space.nvec.dtype : "int8";
      const shape = space.shapeOf;
      if (v instanceof Tensor) {
        if (v.dtype !== dtype || !sameShape(v.shape, shape)) throw new TypeError(`${where}: expected a ${dtype} tensor of shape [${shape}], actual ${describe(v)}`);
        return v;
      }
      if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") v = [v];
      if (!(ArrayBuffer.isView(v) || Array.isArray(v))) throw new TypeError(`${where}: expected a ${dtype} array of shape [${shape}], actual ${describe(v)}`);
      let t;
      try {
        t = tensor(dtype, shape, v);
      } catch (e) {
        throw new TypeError(`${where}: ${e.message}`);
      }
      checkExact(t, v, where);
      return t;
    }
    case "discrete": {
      if (v instanceof Tensor && v.shape.length === 0) v = v.data[0];
      if (!isInt(v)) throw new TypeError(`${where}: expected an integer for Discrete(${space.n}), actual ${describe(v)}`);
      return v;
    }
    case "text":
      if (typeof v !== "string") throw new TypeError(`${where}: expected a string, actual ${describe(v)}`);
      return v;
    case "dict": {
      const get = v instanceof Map ? (k) => v.get(k) : (k) => v?.[k];
      const out = new Map();
      for (const [k, s] of space.spaces) {
        const x = get(k);
        if (x === undefined) throw new TypeError(`${where}: missing key ${JSON.stringify(k)}`);
        out.set(k, toWire(s, x, `${where}[${JSON.stringify(k)}]`));
      }
      return out;
    }
    case "tuple":
      if (!Array.isArray(v) || v.length !== space.spaces.length) throw new TypeError(`${where}: expected an array of ${space.spaces.length} values, actual ${describe(v)}`);
      return v.map((x, i) => toWire(space.spaces[i], x, `${where}[${i}]`));
    case "sequence":
      if (!Array.isArray(v)) throw new TypeError(`${where}: expected an array, actual ${describe(v)}`);
      return v.map((x, i) => toWire(space.space, x, `${where}[${i}]`));
    case "one_of":
      if (!Array.isArray(v) || v.length !== 2 || !(v[0] >= 0 && v[0] < space.spaces.length)) throw new TypeError(`${where}: expected [index, value]`);
      return [Number(v[0]), toWire(space.spaces[v[0]], v[1], `${where}[1]`)];
    case "graph": {
      const rows = (s, x, w) => (x instanceof Tensor ? x : tensor(s.dtype, [x.length / (s.kind === "box" ? s.shape.reduce((a, b) => a * b, 1) : 1), ...(s.kind === "box" ? s.shape : [])], x));
      const nodes = rows(space.nodeSpace, v.nodes, `${where}.nodes`);
      if (v.edges == null && v.edgeLinks == null) return new Map([["nodes", nodes], ["edges", null], ["edge_links", null]]);
      if (!space.edgeSpace) throw new TypeError(`${where}: this graph space has no edge_space, so edges and edgeLinks must both be null`);
      if (v.edges == null || v.edgeLinks == null) throw new TypeError(`${where}: edges and edgeLinks must both be null or both be given`);
      const links = v.edgeLinks instanceof Tensor ? v.edgeLinks : tensor("int64", [v.edgeLinks.length / 2, 2], v.edgeLinks);
      return new Map([["nodes", nodes], ["edges", rows(space.edgeSpace, v.edges, `${where}.edges`)], ["edge_links", links]]);
    }
  }
}

/** Bounds (space.contains) of a value fromWire returned; a string says why not, null if inside. */
export function outside(space, v) {
  switch (space.kind) {
    case "box": {
      const lo = tensorNumbers(space.low), hi = tensorNumbers(space.high), x = tensorNumbers(v);
      for (let i = 0; i < x.length; i++) if (!(cmpLE(lo[i], x[i]) && cmpLE(x[i], hi[i]))) return `element ${i} = ${x[i]} is outside [${lo[i]}, ${hi[i]}]`;
      return null;
    }
    case "discrete": {
      const x = BigInt(v), s = BigInt(space.start);
      return x >= s && x < s + BigInt(space.n) ? null : `${v} is outside Discrete(${space.n}, start=${space.start})`;
    }
    case "multi_discrete": {
      const n = tensorNumbers(space.nvec), s = tensorNumbers(space.start), x = tensorNumbers(v);
      for (let i = 0; i < x.length; i++) if (!(BigInt(x[i]) >= BigInt(s[i]) && BigInt(x[i]) < BigInt(s[i]) + BigInt(n[i]))) return `element ${i} = ${x[i]} is outside [${s[i]}, ${BigInt(s[i]) + BigInt(n[i]) - 1n}]`;
      return null;
    }
    case "multi_binary":
      for (const x of v.data) if (x !== 0 && x !== 1) return `an element is ${x}, not 0 or 1`;
      return null;
    case "text": {
      const chars = [...v];
      if (chars.length < space.minLength || chars.length > space.maxLength) return `length ${chars.length} is outside [${space.minLength}, ${space.maxLength}]`;
      for (const c of chars) if (!space.charset.includes(c)) return `character ${JSON.stringify(c)} is not in the charset`;
      return null;
    }
    case "dict":
      for (const [k, s] of space.spaces) {
        const why = outside(s, v[k]);
        if (why) return `[${JSON.stringify(k)}]: ${why}`;
      }
      return null;
    case "tuple":
      for (let i = 0; i < v.length; i++) {
        const why = outside(space.spaces[i], v[i]);
        if (why) return `[${i}]: ${why}`;
      }
      return null;
    case "sequence":
      for (let i = 0; i < v.length; i++) {
        const why = outside(space.space, v[i]);
        if (why) return `[${i}]: ${why}`;
      }
      return null;
    case "one_of":
      return outside(space.spaces[v[0]], v[1]);
    default:
      return null;
  }
}

/** The sub-env i's part of a batched value (section 10): a row of a tensor, an element of a tuple. */
export function subValue(space, v, i) {
  switch (space.kind) {
    case "box":
    case "multi_discrete":
    case "multi_binary": {
      const per = v.data.length / v.shape[0];
      return new Tensor(v.dtype, v.shape.slice(1), v.data.subarray(i * per, (i + 1) * per));
    }
    case "discrete": {
      const x = v.data[i];
      return typeof x === "bigint" ? intOf(x) : x;
    }
    case "dict":
      return Object.fromEntries([...space.spaces].map(([k, s]) => [k, subValue(s, v[k], i)]));
    case "tuple":
      return space.spaces.map((s, j) => subValue(s, v[j], i));
    default:
      return v[i];
  }
}

// ---- transports (section 1) ----------------------------------------------------------------
/** Parses tcp://HOST:PORT, unix:///path, ws://HOST:PORT/path. */
export function parseAddress(address) {
  const bad = () => {
    throw new RlayError(null, `ADDRESS ${JSON.stringify(address)} is not usable: expected tcp://HOST:PORT, unix:///absolute/path or ws://HOST:PORT/PATH`);
  };
  if (typeof address !== "string") bad();
  let m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(address);
  if (m) {
    const port = Number(m[2]);
    if (port > 65535) bad();
    return { scheme: "tcp", host: m[1].replace(/^\[|\]$/g, ""), port };
  }
  m = /^unix:\/\/(\/.+)$/.exec(address);
  if (m) return { scheme: "unix", path: m[1] };
  if (/^wss?:\/\/[^/]+/.test(address)) return { scheme: "ws", url: address };
  return bad();
}

async function nodeNet() {
  try {
    return await import("node:net");
  } catch {
    throw new RlayError(null, "tcp:// and unix:// need Node's net module; in a browser use a ws:// address");
  }
}

/** A stream socket (Node net) as a transport. */
function netTransport(sock) {
  sock.setNoDelay?.(true);
  return {
    start(t) {
      sock.on("data", (b) => t.onData(new Uint8Array(b.buffer, b.byteOffset, b.length)));
      sock.on("end", () => t.onEnd());
      sock.on("error", (e) => t.onTransportError(e));
      sock.on("close", () => t.onEnd());
    },
    send(frame) {
      if (!sock.destroyed) sock.write(frame);
    },
    close() {
      if (!sock.destroyed) sock.end();
      setTimeout(() => sock.destroy(), 1000).unref?.();
    },
    stream: true,
  };
}

/** A WebSocket (browser, Node 22+, or a passed-in class): one rlay frame per binary message. */
function wsTransport(ws) {
  ws.binaryType = "arraybuffer";
  return {
    start(t) {
      ws.addEventListener("message", (ev) => {
        if (typeof ev.data === "string") return t.onTransportError(new RlayError(ErrorCode.BAD_MAGIC, "a text WebSocket message; rlay frames travel as binary messages"));
        t.onMessage(new Uint8Array(ev.data));
      });
      ws.addEventListener("close", () => t.onEnd());
      ws.addEventListener("error", () => t.onTransportError(new RlayError(null, `WebSocket error on ${ws.url}`)));
    },
    send(frame) {
      if (ws.readyState === 1) ws.send(frame);
    },
    close() {
      if (ws.readyState <= 1) ws.close(1000);
    },
    stream: false,
  };
}

/**
 * The server side of a WebSocket (RFC 6455) on a Node socket, for a Node env side that listens
 * (Python: rlay.ClientEnv("ws://...")): one rlay frame per binary message. No dependency: the
 * opening handshake is SHA-1 from node:crypto, frames are parsed here.
 */
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

async function acceptWebSocket(sock, path, maxMessage) {
  const crypto = await import("node:crypto");
  const head = await new Promise((resolve, reject) => {
    let got = new Uint8Array(0);
    const onData = (chunk) => {
      const both = new Uint8Array(got.length + chunk.length);
      both.set(got);
      both.set(chunk, got.length);
      got = both;
      const end = Buffer.from(got.buffer, got.byteOffset, got.length).indexOf("\r\n\r\n");
      if (end < 0 && got.length > 16384) return done(new RlayError(ErrorCode.BAD_MAGIC, "an HTTP request head larger than 16 KiB"));
      if (end >= 0) done(null, [new TextDecoder().decode(got.subarray(0, end)), got.subarray(end + 4)]);
    };
    const onEnd = () => done(new PeerClosedError("the peer closed the connection before its WebSocket handshake"));
    const done = (err, value) => {
      sock.pause(); // nothing is lost before the transport listens
      sock.off("data", onData);
      sock.off("end", onEnd);
      sock.off("error", onEnd);
      if (err) reject(err);
      else resolve(value);
    };
    sock.on("data", onData);
    sock.on("end", onEnd);
    sock.on("error", onEnd);
  });
  const [text, rest] = head;
  const [requestLine, ...lines] = text.split("\r\n");
  const headers = {};
  for (const line of lines) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const [method, target] = requestLine.split(" ");
  const refuse = (status, why, code = ErrorCode.BAD_MAGIC) => {
    sock.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n${why}\n`);
    throw new RlayError(code, why);
  };
  if (method !== "GET" || (headers.upgrade ?? "").toLowerCase() !== "websocket" || !headers["sec-websocket-key"])
    refuse("426 Upgrade Required", `this is an rlay env side speaking WebSocket; the peer sent a plain HTTP request (${JSON.stringify(requestLine.slice(0, 80))}): connect with rlay.ClientEnv("ws://...")`);
  if (headers["sec-websocket-version"] !== "13") refuse("426 Upgrade Required", `WebSocket version ${headers["sec-websocket-version"]} (only 13)`);
  const wanted = path || "/";
  const got = (target ?? "/").split("?")[0];
  if (got !== wanted) refuse("404 Not Found", `the WebSocket path ${JSON.stringify(got)} is not this env side's ${JSON.stringify(wanted)}`);
  const accept = crypto.createHash("sha1").update(headers["sec-websocket-key"] + WS_GUID).digest("base64");
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  return wsServerTransport(sock, rest, maxMessage);
}

function wsServerTransport(sock, pending, maxMessage) {
  sock.setNoDelay?.(true);
  let buf = pending;
  let parts = null; // fragments of a message in progress
  let t = null;
  let closed = false;
  const writeFrame = (opcode, payload) => {
    const n = payload.length;
    let h;
    if (n < 126) h = Uint8Array.of(0x80 | opcode, n);
    else if (n < 65536) h = Uint8Array.of(0x80 | opcode, 126, n >> 8, n & 255);
    else {
      h = new Uint8Array(10);
      h[0] = 0x80 | opcode;
      h[1] = 127;
      new DataView(h.buffer).setBigUint64(2, BigInt(n));
    }
    sock.cork();
    sock.write(h);
    sock.write(payload);
    sock.uncork();
  };
  const parse = () => {
    while (buf.length >= 2 && !closed) {
      const b0 = buf[0], b1 = buf[1];
      let n = b1 & 0x7f, p = 2;
      if (n === 126) {
        if (buf.length < 4) return;
        n = (buf[2] << 8) | buf[3];
        p = 4;
      } else if (n === 127) {
        if (buf.length < 10) return;
        const big = new DataView(buf.buffer, buf.byteOffset + 2, 8).getBigUint64(0);
        n = big > BigInt(maxMessage()) ? Infinity : Number(big);
        p = 10;
      }
      if (!(b1 & 0x80)) throw new RlayError(ErrorCode.BAD_HEADER, "an unmasked WebSocket frame from the client (RFC 6455 section 5.1)");
      if (n + (parts ? parts.length : 0) > maxMessage())
        throw new RlayError(ErrorCode.FRAME_TOO_LARGE, `a WebSocket message larger than ${maxMessage()} bytes (the frame limit + its 12-byte header; the first frame's limit is max_handshake_frame_size)`);
      if (buf.length < p + 4 + n) return;
      const mask = buf.subarray(p, p + 4);
      // 4 bytes of headroom: the rlay data section (12 bytes into the message) lands 8-aligned
      const payload = new Uint8Array(n + 4).subarray(4);
      const src = buf.subarray(p + 4, p + 4 + n);
      for (let i = 0; i < n; i++) payload[i] = src[i] ^ mask[i & 3];
      buf = buf.subarray(p + 4 + n);
      const opcode = b0 & 0x0f, fin = (b0 & 0x80) !== 0;
      if (opcode === 0x2 || opcode === 0x0) {
        if ((opcode === 0x0) !== (parts !== null)) throw new RlayError(ErrorCode.BAD_HEADER, "a WebSocket continuation frame out of place");
        let msg = payload;
        if (parts) {
          const all = new Uint8Array(parts.length + n + 4).subarray(4);
          all.set(parts);
          all.set(payload, parts.length);
          msg = all;
        }
        if (fin) {
          parts = null;
          t.onMessage(msg);
        } else parts = msg;
      } else if (opcode === 0x1) {
        throw new RlayError(ErrorCode.BAD_MAGIC, "a text WebSocket message; rlay frames travel as binary messages");
      } else if (opcode === 0x8) {
        closed = true;
        writeFrame(0x8, payload.subarray(0, 2));
        sock.end();
        t.onEnd();
      } else if (opcode === 0x9) writeFrame(0xa, payload);
      else if (opcode !== 0xa) throw new RlayError(ErrorCode.BAD_HEADER, `WebSocket opcode ${opcode} is not defined`);
    }
  };
  const feed = () => {
    try {
      parse();
    } catch (e) {
      t.onTransportError(e);
    }
  };
  return {
    start(target) {
      t = target;
      sock.on("data", (b) => {
        const chunk = new Uint8Array(b.buffer, b.byteOffset, b.length);
        if (buf.length === 0) buf = chunk;
        else {
          const both = new Uint8Array(buf.length + chunk.length);
          both.set(buf);
          both.set(chunk, buf.length);
          buf = both;
        }
        feed();
      });
      sock.on("end", () => t.onEnd());
      sock.on("close", () => t.onEnd());
      sock.on("error", (e) => t.onTransportError(e));
      sock.resume();
      if (buf.length) queueMicrotask(feed);
    },
    send(frame) {
      if (!sock.destroyed && !closed) writeFrame(0x2, frame);
    },
    close() {
      if (!sock.destroyed && !closed) {
        closed = true;
        writeFrame(0x8, Uint8Array.of(0x03, 0xe8)); // 1000: normal closure
        sock.end();
      }
      setTimeout(() => sock.destroy(), 1000).unref?.();
    },
    stream: false,
  };
}

// ---- the env side ----------------------------------------------------------------------------
const COMMAND_KINDS = { [Kind.RESET]: "reset", [Kind.STEP]: "step", [Kind.RENDER]: "render", [Kind.CALL]: "call", [Kind.CLOSE]: "close" };

/** A command from the agent side. Answer it once: reply(...) or fail(error). */
export class Command {
  constructor(env, kind, fields) {
    this.env = env;
    this.kind = kind; // "reset" | "step" | "render" | "call" | "close"
    this.answered = false;
    if (kind === "reset") {
      this.seed = fields.get("seed"); // null, a number (BigInt past 2^53), or an array (batch)
      this.options = fields.get("options") === null ? null : toPlain(fields.get("options"));
    } else if (kind === "call") {
      this.name = fields.get("name");
      this.args = toPlain(fields.get("args"));
      this.kwargs = toPlain(fields.get("kwargs"));
    }
  }
  /** reset: (obs, info); step: (obs, reward, terminated, truncated, info); render: (frame); call: (value); close: (). */
  reply(...a) {
    const env = this.env;
    switch (this.kind) {
      case "reset": return env.replyReset(a[0], a[1]);
      case "step": return env.replyStep(a[0], a[1], a[2], a[3], a[4]);
      case "render": return env.replyRender(a[0]);
      case "call": return env.replyCall(a[0]);
      case "close": return env.replyClose();
    }
  }
  /** Answers with an ERROR: an EnvError's code, else ENV_EXCEPTION with the error's type and stack. */
  fail(error) {
    return this.env.replyException(error);
  }
}

/**
 * One session of the env side (one env, or a batch of numEnvs sub-envs on one connection).
 * Options: observationSpace, actionSpace (Space), metadata (object), renderMode, name, numEnvs,
 * maxFrameSize.
 */
export class EnvSide {
  constructor({ observationSpace, actionSpace, metadata = {}, renderMode = null, name = null, numEnvs = 1, maxFrameSize = DEFAULT_MAX_FRAME_SIZE } = {}) {
    if (!(observationSpace instanceof Space) || !(actionSpace instanceof Space)) throw new TypeError("EnvSide needs observationSpace and actionSpace (rlay.box(), rlay.discrete(), ...)");
    if (!Number.isInteger(numEnvs) || numEnvs < 1) throw new TypeError(`numEnvs must be an int >= 1, actual ${numEnvs}`);
    this.observationSpace = observationSpace;
    this.actionSpace = actionSpace;
    this.numEnvs = numEnvs;
    this.batchedObs = numEnvs > 1 ? batchSpace(observationSpace, numEnvs) : observationSpace;
    this.batchedAction = numEnvs > 1 ? batchSpace(actionSpace, numEnvs) : actionSpace;
    const md = metadata instanceof Map ? new Map(metadata) : new Map(Object.entries(metadata));
    if (numEnvs > 1 && !md.has("autoreset_mode")) md.set("autoreset_mode", "next_step");
    this.metadata = md;
    this.renderMode = renderMode;
    this.name = name;
    this.conn = new Connection("env", { maxFrameSize });
    this.queue = [];
    this.pending = null; // the command being answered
    this.waiters = [];
    this.transport = null;
    this.address = null;
    this.everReset = new Array(numEnvs).fill(false);
    this.ended = new Array(numEnvs).fill(false); // episode over at the last STEP (autoreset)
    this.error = null;
    this.finished = false;
    this.done = new Promise((res) => (this.resolveDone = res));
  }

  // -- connecting --
  /** Waits for the agent (Python ClientEnv) to dial; resolves with the bound address once listening. */
  async listen(address) {
    const a = parseAddress(address);
    if (a.scheme === "ws") return this.listenWebSocket(address);
    const net = await nodeNet();
    const server = net.createServer({ noDelay: true });
    if (a.scheme === "unix") {
      const fs = await import("node:fs");
      try {
        if (fs.statSync(a.path).isSocket()) fs.unlinkSync(a.path);
      } catch {}
    }
    await new Promise((res, rej) => {
      server.once("error", (e) => rej(new RlayError(null, `cannot listen on ${address}: ${e.message}`)));
      if (a.scheme === "tcp") server.listen(a.port, a.host, res);
      else server.listen(a.path, res);
    });
    const bound = server.address();
    this.address = a.scheme === "tcp" ? `tcp://${bound.family === "IPv6" ? `[${bound.address}]` : bound.address}:${bound.port}` : address;
    this.server = server;
    server.once("connection", (sock) => {
      server.close();
      if (a.scheme === "unix") import("node:fs").then((fs) => fs.rmSync(a.path, { force: true }));
      this.attach(netTransport(sock));
    });
    return this.address;
  }

  async listenWebSocket(address) {
    const url = new URL(address);
    if (url.protocol !== "ws:") throw new RlayError(null, `cannot listen on ${address}: only ws:// (no TLS) is offered`);
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const port = url.port === "" ? 80 : Number(url.port);
    const net = await nodeNet();
    const server = net.createServer({ noDelay: true });
    await new Promise((res, rej) => {
      server.once("error", (e) => rej(new RlayError(null, `cannot listen on ${address}: ${e.message}`)));
      server.listen(port, host, res);
    });
    const bound = server.address();
    const h = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
    this.address = `ws://${h}:${bound.port}${url.pathname}`;
    this.server = server;
    server.once("connection", (sock) => {
      server.close();
      // a message holds one frame: the first one has the handshake limit (section 13), so a
      // client that has not said HELLO cannot make us buffer more than 64 KiB
      const reader = this.conn.reader;
      const max = () => (reader.handshakeMax ?? reader.max) + 12;
      acceptWebSocket(sock, url.pathname, max).then(
        (transport) => this.attach(transport),
        (e) => {
          sock.destroy();
          this.finish(e instanceof RlayError ? e : new RlayError(null, `WebSocket handshake: ${e.message}`));
        },
      );
    });
    return this.address;
  }

  /** Dials the agent (Python ServerEnv): tcp://, unix:// (Node) or ws:// (a WebSocket). */
  async connect(address, { WebSocket: WS = globalThis.WebSocket } = {}) {
    const a = parseAddress(address);
    this.address = address;
    if (a.scheme === "ws") {
      if (!WS) throw new RlayError(null, "no WebSocket here (Node < 22): pass one, e.g. connect(address, { WebSocket })");
      const ws = new WS(a.url);
      await new Promise((res, rej) => {
        ws.addEventListener("open", res, { once: true });
        ws.addEventListener("error", () => rej(new RlayError(null, `cannot connect to ${address}: the WebSocket failed`)), { once: true });
      });
      this.attach(wsTransport(ws));
      return address;
    }
    const net = await nodeNet();
    const sock = a.scheme === "tcp" ? net.connect({ host: a.host, port: a.port, noDelay: true }) : net.connect(a.path);
    await new Promise((res, rej) => {
      sock.once("connect", res);
      sock.once("error", (e) => rej(new RlayError(null, `cannot connect to ${address}: ${e.code === "ECONNREFUSED" ? "connection refused" : e.message}`)));
    });
    this.attach(netTransport(sock));
    return address;
  }

  /** Uses an already open transport: a Node stream socket or a WebSocket. */
  attach(t) {
    if (t.send === undefined) t = typeof t.addEventListener === "function" ? wsTransport(t) : netTransport(t);
    this.transport = t;
    t.start({
      onData: (b) => this.onBytes(() => this.conn.receiveData(b)),
      onMessage: (b) => this.onBytes(() => this.conn.receiveMessage(b)),
      onEnd: () => this.onEnd(),
      onTransportError: (e) => {
        if (this.finished) return;
        if (e instanceof RlayError && e.code != null) {
          // a WebSocket message that is no rlay frame: tell the peer why, as for framing errors
          try {
            t.send(encodeFrame(Kind.ERROR, errorFields(e.code, e.detail, true)));
          } catch {}
        }
        this.finish(e instanceof RlayError ? e : new RlayError(null, `connection error: ${e.message}`));
      },
    });
    t.send(this.conn.send(Kind.HELLO, helloFields("env"))); // section 7: without waiting
  }

  // -- receiving --
  onBytes(feed) {
    if (this.finished) return;
    try {
      feed();
      for (let ev; (ev = this.conn.nextEvent()); ) this.onMessage(ev);
    } catch (e) {
      if (e instanceof RlayError && e.code != null && !(e instanceof RemoteError)) {
        // protocol errors are fatal: tell the peer why, then close (sections 2, 8)
        try {
          this.transport.send(encodeFrame(Kind.ERROR, errorFields(e.code, e.detail, true)));
        } catch {}
      }
      this.finish(e instanceof RlayError ? e : new RlayError(ErrorCode.INTERNAL, `${e.stack ?? e}`));
    }
    this.wake();
  }
  onMessage(ev) {
    if (ev.kind === Kind.HELLO) {
      const info = new Map([["observation_space", this.observationSpace.toWire()], ["action_space", this.actionSpace.toWire()], ["num_envs", this.numEnvs], ["metadata", this.metadata], ["render_mode", this.renderMode], ["name", this.name]]);
      this.transport.send(this.conn.send(Kind.ENV_INFO, info));
      return;
    }
    if (ev.kind === Kind.ERROR) {
      const f = ev.fields;
      throw new RemoteError(Number(f.get("code")), f.get("message"), f.get("fatal"), f.get("remote_type"), f.get("traceback"));
    }
    const kind = COMMAND_KINDS[ev.kind];
    const cmd = new Command(this, kind, ev.fields);
    if (kind === "step") {
      const action = fromWire(this.batchedAction, ev.fields.get("action"), "action"); // BAD_VALUE: fatal
      cmd.action = action;
      if (this.numEnvs > 1) {
        cmd.actions = Array.from({ length: this.numEnvs }, (_, i) => subValue(this.actionSpace, action, i));
        cmd.autoreset = [...this.ended];
      }
    }
    if (kind === "reset" && this.numEnvs > 1) this.prepareBatchReset(cmd);
    this.queue.push(cmd);
  }
  prepareBatchReset(cmd) {
    const n = this.numEnvs, seed = cmd.seed;
    if (Array.isArray(seed) && seed.length !== n) fail(ErrorCode.BAD_FIELD, `RESET: seed array of ${seed.length}, expected ${n} (num_envs)`);
    cmd.seeds = Array.from({ length: n }, (_, i) => (seed === null ? null : Array.isArray(seed) ? seed[i] : intOf(BigInt(seed) + BigInt(i))));
    const mask = cmd.options?.reset_mask ?? null; // absent or nil: every sub-env (section 10)
    if (mask !== null && !(mask instanceof Tensor && mask.dtype === "bool" && sameShape(mask.shape, [n]))) fail(ErrorCode.BAD_FIELD, `RESET: options.reset_mask must be a bool tensor of shape [${n}]`);
    cmd.resetMask = mask ? Array.from(mask.data, (x) => x === 1) : new Array(n).fill(true);
    // The options each sub-env's reset receives are without reset_mask (as SyncVectorEnv does)
    if (cmd.options && "reset_mask" in cmd.options) {
      const { reset_mask: _, ...rest } = cmd.options;
      cmd.options = rest;
    }
  }
  onEnd() {
    if (this.finished) return;
    try {
      this.conn.receiveEof();
      this.finish(this.conn.eofProblem());
    } catch (e) {
      this.finish(e);
    }
  }
  finish(error) {
    if (this.finished) return;
    this.finished = true;
    this.error = error ?? null;
    this.queue.length = 0;
    this.transport?.close();
    this.server?.close();
    this.wake();
    this.resolveDone(this.error);
  }
  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  // -- loop style --
  /**
   * The next command, or null (none ready, or the session is over: see env.finished/env.error).
   * Never blocks. Commands the SDK answers itself (RESET_NEEDED, INVALID_ACTION, NOT_SUPPORTED
   * render) never reach you. Answer each command before asking for the next.
   */
  poll() {
    if (this.pending && !this.pending.answered) return null;
    while (this.queue.length && !this.finished) {
      const cmd = this.queue.shift();
      if (this.answerBySdk(cmd)) continue;
      this.pending = cmd;
      return cmd;
    }
    return null;
  }
  /**
   * Resolves once a command is waiting (poll() would return it) or the session is over; takes
   * nothing from the queue. For a loop that answers as soon as commands arrive.
   */
  async ready() {
    while (!this.finished && !(this.queue.length && !(this.pending && !this.pending.answered))) {
      await new Promise((res) => this.waiters.push(res));
    }
  }
  /** Resolves with the next command, or null when the session is over (Node scripts, async loops). */
  async next() {
    for (;;) {
      const cmd = this.poll();
      if (cmd || this.finished) return cmd;
      await new Promise((res) => this.waiters.push(res));
    }
  }
  answerBySdk(cmd) {
    if (cmd.kind === "step") {
      const n = this.numEnvs;
      if (!this.everReset.every(Boolean)) {
        this.sendError(ErrorCode.RESET_NEEDED, "step() called before reset()", false);
        return true;
      }
      const acts = n > 1 ? cmd.actions : [cmd.action];
      for (let i = 0; i < n; i++) {
        if (n > 1 && cmd.autoreset[i]) continue; // ignored under next-step autoreset
        const why = outside(this.actionSpace, acts[i]);
        if (why) {
          this.sendError(ErrorCode.INVALID_ACTION, `action${n > 1 ? ` of sub-env ${i}` : ""} outside the action space: ${why}`, false);
          return true;
        }
      }
      return false;
    }
    if (cmd.kind === "render" && this.renderMode == null) {
      this.sendError(ErrorCode.NOT_SUPPORTED, "this env has no render mode", false);
      return true;
    }
    return false;
  }

  // -- replies --
  send(kind, fields) {
    if (this.finished) throw new RlayError(null, `the session is over${this.error ? `: ${this.error.message}` : ""}`);
    const frame = this.conn.send(kind, fields);
    this.transport.send(frame);
    if (this.pending) this.pending.answered = true;
    if (this.conn.state === "closed") this.finish(null);
    this.wake();
  }
  sendError(code, message, fatal, remoteType = null, traceback = null) {
    this.send(Kind.ERROR, errorFields(code, message, fatal, remoteType, traceback));
  }
  info(info, where) {
    if (info == null) return new Map();
    if (typeof info !== "object" || Array.isArray(info)) throw new TypeError(`${where}: info must be an object or a Map, actual ${describe(info)}`);
    return info;
  }
  replyReset(obs, info = {}) {
    const wire = toWire(this.batchedObs, obs, "reset observation");
    const f = new Map([["obs", wire], ["info", this.info(info, "reset")]]);
    const cmd = this.pending;
    this.send(Kind.RESET_RESULT, f);
    for (let i = 0; i < this.numEnvs; i++) {
      if (this.numEnvs === 1 || !cmd?.resetMask || cmd.resetMask[i]) {
        this.everReset[i] = true;
        this.ended[i] = false;
      }
    }
  }
  replyStep(obs, reward, terminated, truncated, info = {}) {
    const n = this.numEnvs;
    const wire = toWire(this.batchedObs, obs, "step observation");
    let r, te, tr;
    if (n === 1) {
      r = new Float(Number(reward));
      te = !!terminated;
      tr = !!truncated;
      if (typeof terminated !== "boolean" || typeof truncated !== "boolean") throw new TypeError("step: terminated and truncated must be booleans");
    } else {
      r = tensor("float64", [n], Array.from(reward, Number));
      te = tensor("bool", [n], Array.from(terminated, (x) => !!x));
      tr = tensor("bool", [n], Array.from(truncated, (x) => !!x));
    }
    const f = new Map([["obs", wire], ["reward", r], ["terminated", te], ["truncated", tr], ["info", this.info(info, "step")]]);
    this.send(Kind.STEP_RESULT, f);
    // next-step autoreset (section 10): the STEP after an episode ended resets that sub-env
    if (n > 1 && this.metadata.get("autoreset_mode") === "next_step") for (let i = 0; i < n; i++) this.ended[i] = te.data[i] === 1 || tr.data[i] === 1;
  }
  replyRender(frame) {
    this.send(Kind.RENDER_RESULT, new Map([["frame", frame ?? null]]));
  }
  replyCall(value) {
    this.send(Kind.CALL_RESULT, new Map([["value", value === undefined ? null : value]]));
  }
  replyClose() {
    this.send(Kind.CLOSE_RESULT, new Map());
  }
  /** Answers the pending command with an ERROR for `error` (an EnvError keeps its code). */
  replyException(error) {
    if (error instanceof EnvError) return this.sendError(error.code, error.message, error.fatal, error.remoteType);
    const type = error?.constructor?.name ?? typeof error;
    const message = error instanceof Error ? error.message : String(error);
    const stack = error instanceof Error ? String(error.stack ?? "") : "";
    this.sendError(ErrorCode.ENV_EXCEPTION, message, false, error instanceof Error ? error.name || type : type, stack);
  }

  // -- callback style --
  /**
   * Runs the session with handlers until it ends; resolves with null after an orderly end or
   * rejects with the error that ended it. handlers: reset(seed, options, cmd) -> [obs, info],
   * step(action, cmd) -> [obs, reward, terminated, truncated, info], optional render(cmd) ->
   * frame, calls: { name(...args) }, close(). Handlers may be async. numEnvs > 1: step receives
   * the batched action (cmd.actions per sub-env, cmd.autoreset), returns rewards/flags arrays.
   */
  async serve(handlers) {
    for (;;) {
      const cmd = await this.next();
      if (!cmd) break;
      try {
        switch (cmd.kind) {
          case "reset": {
            const r = await handlers.reset(cmd.seed, cmd.options, cmd);
            if (r === null || typeof r !== "object") throw new TypeError(`reset() must return [obs, info] or { obs, info }, actual ${describe(r ?? null)}`);
            const [obs, info] = Array.isArray(r) ? r : [r.obs, r.info];
            this.replyReset(obs, info);
            break;
          }
          case "step": {
            const r = await handlers.step(cmd.action, cmd);
            if (r === null || typeof r !== "object") throw new TypeError(`step() must return [obs, reward, terminated, truncated, info] or an object with those keys, actual ${describe(r ?? null)}`);
            const [obs, reward, te, tr, info] = Array.isArray(r) ? r : [r.obs, r.reward, r.terminated, r.truncated, r.info];
            this.replyStep(obs, reward, te, tr, info);
            break;
          }
          case "render":
            if (!handlers.render) throw new EnvError(ErrorCode.NOT_SUPPORTED, "this env does not render");
            this.replyRender(await handlers.render(cmd));
            break;
          case "call": {
            const fn = handlers.calls && Object.hasOwn(handlers.calls, cmd.name) ? handlers.calls[cmd.name] : null;
            if (typeof fn !== "function") throw new EnvError(ErrorCode.NOT_SUPPORTED, `this env has no function named ${JSON.stringify(cmd.name)}`);
            const args = Object.keys(cmd.kwargs).length ? [...cmd.args, cmd.kwargs] : cmd.args;
            this.replyCall(await fn.apply(handlers.calls, args));
            break;
          }
          case "close":
            await handlers.close?.();
            this.replyClose();
            break;
        }
      } catch (e) {
        if (this.finished) break;
        if (!cmd.answered) this.replyException(e);
      }
    }
    if (this.error) throw this.error;
    return null;
  }

  /** Ends the session from this side (the game quit): a fatal SHUTTING_DOWN, then close. */
  shutdown(message = "the env side is closing") {
    if (this.finished) return;
    if (this.transport && this.conn.state !== "closed") {
      try {
        this.transport.send(encodeFrame(Kind.ERROR, errorFields(ErrorCode.SHUTTING_DOWN, message, true)));
      } catch {}
    }
    this.finish(null);
  }
}

/**
 * The address and direction a program was started with: --listen [ADDR] / --connect [ADDR] in
 * argv, else the launcher's variables RLAY_ADDRESS and RLAY_MODE (listen | dial; unset: listen).
 * Returns { mode: "listen" | "connect", address } or throws with a usage message.
 */
export function launchTarget(argv = [], environ = globalThis.process?.env ?? {}) {
  let mode = null, address = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--listen" || argv[i] === "--connect") {
      mode = argv[i].slice(2);
      if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) address = argv[++i];
    }
  }
  if (mode === null) {
    const m = environ.RLAY_MODE;
    if (m && m !== "listen" && m !== "dial") throw new RlayError(null, `RLAY_MODE is ${JSON.stringify(m)}; expected listen or dial`);
    mode = m === "dial" ? "connect" : "listen";
  }
  address ??= environ.RLAY_ADDRESS ?? null;
  if (!address) throw new RlayError(null, "no address: pass --listen ADDRESS / --connect ADDRESS or set RLAY_ADDRESS");
  return { mode, address };
}

/**
 * Opens the session the way a launched program should (Node): listen or dial per launchTarget();
 * a listener prints `RLAY_LISTENING <address>` on stdout once listening.
 */
export async function open(env, argv = globalThis.process?.argv.slice(2) ?? [], environ) {
  const { mode, address } = launchTarget(argv, environ);
  if (mode === "connect") return env.connect(address);
  const bound = await env.listen(address);
  globalThis.process?.stdout.write(`RLAY_LISTENING ${bound}\n`);
  return bound;
}

/** A stand-alone value's canonical body and data section (spec section 12's space vectors). */
export function encodeValue(v) {
  const w = new Writer();
  w.value(v);
  const frame = w.frame(Kind.CALL_RESULT);
  return { body: frame.subarray(12 + w.dataLen), data: frame.subarray(12, 12 + w.dataLen) };
}
