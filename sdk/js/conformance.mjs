// The conformance runner of spec/protocol.md section 12 for rlay.mjs, under Node.
// stdin: one line in, stdout: one answer out (`ok` or `fail <why>`), exit 0 at end of input.
//   roundtrip FRAME_HEX CANON_HEX            decode the frame, re-encode canonically, compare
//   reject STREAM_HEX ERROR_NAME ROLE STATE [NUM_ENVS]  feed the bytes (then end of stream) to a
//                                            receiver whose session has num_envs NUM_ENVS (default 1)
// and, as rlay-c does, the space vectors of spec/vectors/spaces.json (section 9):
//   space BODY DATA | space_value SBODY SDATA VBODY VDATA | space_reject BODY DATA ERROR
//   value_reject SBODY SDATA VBODY VDATA ERROR
import * as rlay from "./rlay.mjs";
import { createInterface } from "node:readline";

class BadLine extends Error {}
function unhex(s) {
  if (s.length % 2 || /[^0-9a-fA-F]/.test(s)) throw new BadLine("bad hex");
  return new Uint8Array(Buffer.from(s, "hex"));
}
const hex = (b) => Buffer.from(b.buffer, b.byteOffset, b.length).toString("hex");
const oneLine = (s) => String(s).replace(/[\x00-\x1f\x7f]/g, "?");

function roundtrip(frameHex, canonHex) {
  const reader = new rlay.FrameReader();
  reader.feed(unhex(frameHex));
  reader.feedEof();
  if (reader.frames.length !== 1) return `fail expected one frame, got ${reader.frames.length}`;
  const [kind, data, body] = reader.frames[0];
  const fields = rlay.checkFields(kind, rlay.decodeValue(body, data));
  const got = hex(rlay.encodeFrame(kind, rlay.canonicalFields(kind, fields)));
  if (got === canonHex.toLowerCase()) return "ok";
  let i = 0;
  while (i < got.length && got[i] === canonHex[i]) i++;
  return `fail re-encoded frame differs at byte ${i >> 1}: got ${got.slice(i, i + 40)} expected ${canonHex.slice(i, i + 40)} (lengths ${got.length / 2} and ${canonHex.length / 2})`;
}

function rejectLine(streamHex, error, role, state, numEnvs = "1") {
  if (!/^[1-9][0-9]*$/.test(numEnvs)) return `fail NUM_ENVS '${numEnvs}' is not a positive int`;
  if (!(error in rlay.ErrorCode)) return `fail unknown error name ${error}`;
  if (role !== "-" && role !== "agent" && role !== "env") return `fail unknown role '${role}'`;
  if (state !== "-" && !rlay.STATES.includes(state)) return `fail unknown state '${state}'`;
  const bytes = unhex(streamHex);
  try {
    if (state === "-") {
      const reader = new rlay.FrameReader();
      const drain = () => {
        while (reader.frames.length) {
          const [kind, data, body] = reader.frames.shift();
          rlay.checkFields(kind, rlay.decodeValue(body, data));
        }
      };
      reader.feed(bytes);
      drain();
      reader.feedEof();
    } else {
      const conn = new rlay.Connection(role, { state, numEnvs: Number(numEnvs) });
      conn.receiveData(bytes);
      while (conn.nextEvent()) {}
      conn.receiveEof();
    }
  } catch (e) {
    if (e instanceof BadLine) return `fail ${e.message}`;
    if (!(e instanceof rlay.RlayError) || e.code == null) return `fail ${oneLine(e.stack ?? e)}`;
    return e.codeName === error ? "ok" : `fail expected ${error}, got ${oneLine(e.message)}`;
  }
  return `fail accepted: no error before the stream ended cleanly`;
}

function spaces(tok) {
  const cmd = tok[0];
  const want = { space: 3, space_value: 5, space_reject: 4, value_reject: 6 }[cmd];
  if (tok.length !== want) return `fail ${cmd} takes ${want - 1} fields`;
  let space;
  try {
    space = rlay.parseSpace(rlay.decodeValue(unhex(tok[1]), unhex(tok[2])));
  } catch (e) {
    if (cmd === "space_reject" && e instanceof rlay.RlayError) return e.codeName === tok[3] ? "ok" : `fail expected ${tok[3]}, got ${oneLine(e.message)}`;
    return `fail the space was refused: ${oneLine(e.message)}`;
  }
  if (cmd === "space_reject") return `fail accepted; expected ${tok[3]}`;
  const compare = (v, bodyHex, dataHex) => {
    const { body, data } = rlay.encodeValue(v);
    if (hex(data) !== dataHex) return `fail data section: got ${hex(data).slice(0, 80)} expected ${dataHex.slice(0, 80)}`;
    if (hex(body) !== bodyHex) return `fail body: got ${hex(body).slice(0, 120)} expected ${bodyHex.slice(0, 120)}`;
    return "ok";
  };
  if (cmd === "space") return compare(space.toWire(), tok[1], tok[2]);
  const value = rlay.decodeValue(unhex(tok[3]), unhex(tok[4]));
  try {
    rlay.fromWire(space, value);
  } catch (e) {
    if (cmd === "value_reject") return e.codeName === tok[5] ? "ok" : `fail expected ${tok[5]}, got ${oneLine(e.message)}`;
    return `fail ${oneLine(e.message)}`;
  }
  if (cmd === "value_reject") return `fail accepted; expected ${tok[5]}`;
  return compare(value, tok[3], tok[4]);
}

function answer(line) {
  const tok = line.split(" ");
  try {
    if (tok[0] === "roundtrip") return tok.length === 3 ? roundtrip(tok[1], tok[2]) : "fail roundtrip needs FRAME_HEX CANON_HEX";
    if (tok[0] === "reject") return tok.length === 5 || tok.length === 6 ? rejectLine(...tok.slice(1)) : "fail reject needs STREAM_HEX ERROR_NAME ROLE STATE [NUM_ENVS]";
    if (tok[0].startsWith("space") || tok[0] === "value_reject") return spaces(tok);
    return `fail unknown command '${oneLine(tok[0].slice(0, 40))}'`;
  } catch (e) {
    return `fail ${oneLine(e instanceof rlay.RlayError || e instanceof BadLine ? e.message : e.stack ?? e)}`;
  }
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const raw of rl) {
  const line = raw.replace(/\r$/, "");
  if (!line) continue;
  process.stdout.write(answer(line) + "\n");
}
