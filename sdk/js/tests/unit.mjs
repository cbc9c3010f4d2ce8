// Unit tests of rlay.mjs with no sockets (node --test sdk/js/tests/unit.mjs): framing fed in any
// chunking, WebSocket messages and their zero-copy tensor views, float16, spaces and batches,
// the state machine from both roles, addresses and the launcher variables.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as rlay from "../rlay.mjs";

const frames = [
  rlay.encodeFrame(rlay.Kind.HELLO, rlay.helloFields("agent")),
  rlay.encodeFrame(rlay.Kind.RESET, new Map([["seed", 2n ** 64n - 1n], ["options", new Map([["x", rlay.float(1)]])]])),
  rlay.encodeFrame(rlay.Kind.STEP, new Map([["action", rlay.tensor("float64", [2, 3], [1, 2, 3, 4, 5, 6])]])),
];
const stream = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
frames.reduce((at, f) => (stream.set(f, at), at + f.length), 0);

test("a stream cut anywhere gives the same frames", () => {
  for (const size of [1, 2, 3, 7, 12, 13, 64, stream.length]) {
    const r = new rlay.FrameReader();
    for (let i = 0; i < stream.length; i += size) r.feed(stream.subarray(i, i + size));
    r.feedEof();
    assert.equal(r.frames.length, 3, `chunks of ${size}`);
    const step = rlay.checkFields(r.frames[2][0], rlay.decodeValue(r.frames[2][2], r.frames[2][1]));
    assert.deepEqual(Array.from(step.get("action").data), [1, 2, 3, 4, 5, 6]);
    const reset = rlay.checkFields(r.frames[1][0], rlay.decodeValue(r.frames[1][2], r.frames[1][1]));
    assert.equal(reset.get("seed"), 2n ** 64n - 1n);
    assert.ok(reset.get("options").get("x") instanceof rlay.Float);
  }
});

test("a stream that ends inside a frame is TRUNCATED, between frames it is not", () => {
  const r = new rlay.FrameReader();
  r.feed(stream.subarray(0, frames[0].length + 5));
  assert.throws(() => r.feedEof(), (e) => e.codeName === "TRUNCATED");
  const ok = new rlay.FrameReader();
  ok.feed(stream.subarray(0, frames[0].length));
  ok.feedEof();
});

test("received tensors are views on the frame buffer (no copy) when aligned", () => {
  const r = new rlay.FrameReader();
  r.feed(frames[2]);
  const [, data, body] = r.frames[0];
  const t = rlay.decodeValue(body, data).get("action");
  assert.equal(t.data.buffer, data.buffer); // a view, not a copy
  assert.ok(t.data instanceof Float64Array);
});

test("a WebSocket message holds one frame; 8-byte tensors at offset 12 are copied, others viewed", () => {
  const conn = new rlay.Connection("env", { state: "idle" });
  const msg = new Uint8Array(frames[2]); // its own ArrayBuffer: the data section starts at 12
  conn.receiveMessage(msg);
  const ev = conn.nextEvent();
  assert.equal(ev.name, "STEP");
  assert.notEqual(ev.fields.get("action").data.buffer, msg.buffer); // float64 at 12: misaligned, copied
  const f32 = new Uint8Array(rlay.encodeFrame(rlay.Kind.RENDER_RESULT, new Map([["frame", rlay.tensor("float32", [2], [1.5, 2.5])]])));
  const agent = new rlay.Connection("agent", { state: "render" });
  agent.receiveMessage(f32);
  const frame = agent.nextEvent().fields.get("frame");
  assert.equal(frame.data.buffer, f32.buffer); // 4-byte elements at 12: viewed in place
  assert.deepEqual(Array.from(frame.data), [1.5, 2.5]);
  const two = new Uint8Array([...frames[0], ...frames[0]]);
  assert.throws(() => new rlay.Connection("env").receiveMessage(two), (e) => e.codeName === "TRUNCATED");
});

test("float16 round trip, including subnormals, infinities and rounding", () => {
  const values = [0, -0, 1, -2.5, 65504, 6.103515625e-5, 5.960464477539063e-8, Infinity, -Infinity, 1.0009765625, 0.1];
  const t = rlay.tensor("float16", [values.length], values);
  const back = rlay.decodeValue(rlay.encodeValue(t).body, rlay.encodeValue(t).data);
  const bits = Array.from(back.data);
  assert.deepEqual(bits.slice(0, 9), [0x0000, 0x8000, 0x3c00, 0xc100, 0x7bff, 0x0400, 0x0001, 0x7c00, 0xfc00]);
  assert.equal(bits[9], 0x3c01);
  assert.equal(bits[10], 0x2e66); // 0.1 rounds to nearest
});

test("spaces: builders, descriptors, batches, values", () => {
  const b = rlay.box({ low: [-1, -2], high: [1, 2], dtype: "float32" });
  assert.deepEqual(b.shape, [2]);
  const back = rlay.parseSpace(rlay.decodeValue(rlay.encodeValue(b.toWire()).body, rlay.encodeValue(b.toWire()).data));
  assert.deepEqual(Array.from(back.high.data), [1, 2]);
  const i = rlay.box({ low: -Infinity, high: Infinity, shape: [1], dtype: "int32" });
  assert.deepEqual(Array.from(i.low.data), [-(2 ** 31)]);
  const batched = rlay.batchSpace(rlay.discrete(3, { start: 1 }), 4);
  assert.equal(batched.kind, "multi_discrete");
  assert.deepEqual(Array.from(batched.start.data), [1n, 1n, 1n, 1n]);
  const d = rlay.dict({ a: rlay.discrete(2), b: rlay.text(3) });
  assert.equal(rlay.batchSpace(d, 2).spaces.get("b").kind, "tuple");
  assert.equal(rlay.outside(rlay.discrete(3, { start: 1 }), 0), "0 is outside Discrete(3, start=1)");
  assert.equal(rlay.outside(b, rlay.tensor("float32", [2], [0, 3])), "element 1 = 3 is outside [-2, 2]");
  assert.throws(() => rlay.toWire(b, [1, 2, 3]), TypeError);
  assert.throws(() => rlay.fromWire(b, 5), (e) => e.codeName === "BAD_VALUE");
  assert.equal(rlay.text(4, { charset: "cba" }).charset, "abc");
});

test("the state machine: an env side cannot answer what was not asked", () => {
  const env = new rlay.Connection("env", { state: "idle" });
  assert.throws(() => env.send(rlay.Kind.STEP_RESULT, new Map()), /cannot send STEP_RESULT in state idle/);
  const agent = new rlay.Connection("agent", { state: "idle" });
  agent.send(rlay.Kind.RESET, new Map([["seed", null], ["options", null]]));
  assert.equal(agent.state, "reset");
  assert.equal(new rlay.Connection("env", { state: "idle" }).eofProblem(), null); // orderly end
  assert.match(new rlay.Connection("env", { state: "step" }).eofProblem().message, /in state step/);
});

test("addresses and the launcher variables", () => {
  assert.deepEqual(rlay.parseAddress("tcp://127.0.0.1:0"), { scheme: "tcp", host: "127.0.0.1", port: 0 });
  assert.deepEqual(rlay.parseAddress("tcp://[::1]:80"), { scheme: "tcp", host: "::1", port: 80 });
  assert.deepEqual(rlay.parseAddress("unix:///tmp/x.sock"), { scheme: "unix", path: "/tmp/x.sock" });
  assert.equal(rlay.parseAddress("ws://127.0.0.1:9/rlay").scheme, "ws");
  assert.throws(() => rlay.parseAddress("http://x"), /tcp:\/\/HOST:PORT/);
  assert.deepEqual(rlay.launchTarget([], { RLAY_ADDRESS: "unix:///a", RLAY_MODE: "dial" }), { mode: "connect", address: "unix:///a" });
  assert.deepEqual(rlay.launchTarget([], { RLAY_ADDRESS: "unix:///a" }), { mode: "listen", address: "unix:///a" });
  assert.deepEqual(rlay.launchTarget(["--connect", "tcp://h:1"], { RLAY_MODE: "listen" }), { mode: "connect", address: "tcp://h:1" });
  assert.deepEqual(rlay.launchTarget(["--listen"], { RLAY_ADDRESS: "tcp://h:2", RLAY_MODE: "dial" }), { mode: "listen", address: "tcp://h:2" });
  assert.throws(() => rlay.launchTarget([], {}), /RLAY_ADDRESS/);
  assert.throws(() => rlay.launchTarget([], { RLAY_ADDRESS: "x", RLAY_MODE: "both" }), /RLAY_MODE/);
});

test("encoding errors name the key; undefined and class instances are refused", () => {
  assert.throws(() => rlay.encodeValue({ a: [1, { b: undefined }] }), /\["a"\]: \["b"\]: undefined/);
  assert.throws(() => rlay.encodeValue({ d: new Date(0) }), /Date is not an rlay value/);
  assert.throws(() => rlay.encodeValue(2n ** 64n), /outside/);
  assert.throws(() => rlay.tensor("bool", [2], new Uint8Array([0, 2])), /bool tensor/);
  const m = rlay.encodeValue(new Map([["10", 1], ["9", 2]])).body;
  assert.deepEqual(Array.from(m.subarray(0, 4)), [0x82, 0xa2, 0x31, 0x30]); // a Map keeps "10" first
});

// -- the settled points of spec issue 8 that the vectors cannot reach (an env side's own replies) --
/** An EnvSide on an in-memory transport: feed(kind, fields) delivers a frame; sent() decodes replies. */
function memoryEnv(opts) {
  const env = new rlay.EnvSide({ observationSpace: rlay.box({ low: -1, high: 1, shape: [2], dtype: "float32" }), actionSpace: rlay.discrete(3), ...opts });
  const out = new rlay.FrameReader();
  let hooks;
  env.attach({ start: (t) => (hooks = t), send: (f) => out.feed(f), close() {}, stream: true });
  const sent = () => out.frames.splice(0).map(([k, d, b]) => ({ kind: k, fields: rlay.checkFields(k, rlay.decodeValue(b, d)) }));
  const feed = (kind, fields) => hooks.onData(rlay.encodeFrame(kind, fields));
  feed(rlay.Kind.HELLO, rlay.helloFields("agent"));
  assert.deepEqual(sent().map((m) => m.kind), [rlay.Kind.HELLO, rlay.Kind.ENV_INFO]);
  return { env, feed, sent };
}
const step = (a) => new Map([["action", a]]);
const errorOf = (m) => [m.kind, rlay.errorName(Number(m.fields.get("code"))), m.fields.get("fatal")];

test("a received STEP: structure (BAD_VALUE, fatal) before RESET_NEEDED before INVALID_ACTION (section 8)", () => {
  const a = memoryEnv();
  a.feed(rlay.Kind.STEP, step(7)); // in Discrete's structure, outside its bounds, before any reset
  assert.equal(a.env.poll(), null);
  assert.deepEqual(errorOf(a.sent()[0]), [rlay.Kind.ERROR, "RESET_NEEDED", false]);
  a.feed(rlay.Kind.RESET, new Map([["seed", 1], ["options", null]]));
  a.env.poll().reply(new Float32Array([0.5, -0.5]), {});
  a.sent();
  a.feed(rlay.Kind.STEP, step(7));
  assert.equal(a.env.poll(), null);
  assert.deepEqual(errorOf(a.sent()[0]), [rlay.Kind.ERROR, "INVALID_ACTION", false]);
  const b = memoryEnv();
  b.feed(rlay.Kind.STEP, step("left")); // not a Discrete value at all, still before any reset
  assert.deepEqual(errorOf(b.sent()[0]), [rlay.Kind.ERROR, "BAD_VALUE", true]);
  assert.ok(b.env.finished);
});

test("an env side never rounds its own observation: a non-fatal ENV_EXCEPTION names it (section 9)", () => {
  const a = memoryEnv();
  a.feed(rlay.Kind.RESET, new Map([["seed", null], ["options", null]]));
  const cmd = a.env.poll();
  try {
    cmd.reply([0.1, 0], {}); // 0.1 is no float32
  } catch (e) {
    cmd.fail(e);
  }
  const [err] = a.sent();
  assert.deepEqual(errorOf(err), [rlay.Kind.ERROR, "ENV_EXCEPTION", false]);
  assert.match(err.fields.get("message"), /element 0 is 0\.1, which is not exactly a float32/);
  a.feed(rlay.Kind.RESET, new Map([["seed", null], ["options", null]]));
  a.env.poll().reply([0.5, Math.fround(0.1)], {}); // exact float32 values in a plain array are sent
  const [ok] = a.sent();
  assert.equal(ok.kind, rlay.Kind.RESET_RESULT);
  assert.deepEqual(Array.from(ok.fields.get("obs").data), [0.5, Math.fround(0.1)]);
  assert.throws(() => rlay.toWire(rlay.box({ low: 0, high: 9, shape: [1], dtype: "int32" }), [1.5]), /not exactly a int32/);
});

test("an ERROR with a code 1-15 is always fatal, sent or received (sections 6, 11)", () => {
  assert.equal(rlay.errorFields(7, "bad field", false).get("fatal"), true);
  assert.equal(rlay.errorFields(33, "outside", false).get("fatal"), false);
  const env = new rlay.Connection("env", { state: "step" });
  assert.throws(() => env.send(rlay.Kind.ERROR, new Map([...rlay.errorFields(33, "x", false)].map(([k, v]) => [k, k === "code" ? 7 : v]))), /must be fatal/);
  const a = memoryEnv();
  a.feed(rlay.Kind.ERROR, new Map([["code", 7], ["message", "you sent garbage"], ["fatal", false], ["remote_type", null], ["traceback", null]]));
  assert.ok(a.env.finished);
  assert.equal(a.env.error.codeName, "BAD_FIELD");
});

test("limits of section 13: the first frame's 64 KiB, max_values at the container header", () => {
  const big = rlay.encodeFrame(rlay.Kind.HELLO, new Map([...rlay.helloFields("agent"), ["pad", "x".repeat(70000)]]));
  assert.throws(() => new rlay.Connection("env").receiveData(big.subarray(0, 12)), /max_handshake_frame_size 65536/);
  const c = new rlay.Connection("env", { state: "idle" }); // past the handshake: the full limit
  c.receiveData(big.subarray(0, 12));
  const body = new Uint8Array([0xdd, 0x00, 0x04, 0x00, 0x00]); // an array declaring 262144 elements
  assert.throws(() => rlay.decodeValue(body), /MALFORMED|declares/); // fewer bytes than elements: MALFORMED first
  const full = new Uint8Array(5 + 262144).fill(0xc0);
  full.set(body);
  assert.throws(() => rlay.decodeValue(full), (e) => e.codeName === "FRAME_TOO_LARGE");
  const fits = new Uint8Array(5 + 262143).fill(0xc0); // 1 + 262143 values: exactly max_values
  fits.set([0xdd, 0x00, 0x03, 0xff, 0xff]);
  assert.equal(rlay.decodeValue(fits).length, 262143);
  assert.equal(rlay.decodeValue(full, undefined, 1 << 20).length, 262144); // a user may raise it
});

test("a uint64 Discrete may start at 2^63 and above; its last value must fit (section 9)", () => {
  const d = rlay.parseSpace(new Map([["kind", "discrete"], ["n", 3], ["start", 2n ** 64n - 3n], ["dtype", "uint64"]]));
  assert.equal(d.start, 2n ** 64n - 3n);
  assert.throws(() => rlay.parseSpace(new Map([["kind", "discrete"], ["n", 3], ["start", 2n ** 64n - 2n], ["dtype", "uint64"]])), (e) => e.codeName === "BAD_SPACE");
});

test("RESET with sub-envs: reset_mask nil means all, and is removed from the options (section 10)", () => {
  const a = memoryEnv({ numEnvs: 3 });
  a.feed(rlay.Kind.RESET, new Map([["seed", 5], ["options", new Map([["reset_mask", null], ["level", 2]])]]));
  const all = a.env.poll();
  assert.deepEqual(all.resetMask, [true, true, true]);
  assert.deepEqual(all.seeds, [5, 6, 7]);
  assert.deepEqual(all.options, { level: 2 });
  all.reply(new Float32Array(6), {});
  a.sent();
  a.feed(rlay.Kind.RESET, new Map([["seed", [1, null, 3]], ["options", new Map([["reset_mask", rlay.tensor("bool", [3], [false, true, false])]])]]));
  const some = a.env.poll();
  assert.deepEqual(some.resetMask, [false, true, false]);
  assert.deepEqual(some.seeds, [1, null, 3]);
  assert.deepEqual(some.options, {});
});
