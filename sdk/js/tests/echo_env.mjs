// A test env with every space kind of spec section 9: its observation space is its action space,
// and each STEP answers the action as the observation (so Python's sampled values make a full
// round trip: Python encodes, rlay.mjs decodes, checks, re-encodes, Python decodes). info holds
// one value of every free-form type. CALL "echo" returns its arguments, "boom" throws.
import * as rlay from "../rlay.mjs";

const f32 = { dtype: "float32" };
export const space = rlay.dict({
  box: rlay.box({ low: -1, high: 1, shape: [2, 3], ...f32 }),
  image: rlay.box({ low: 0, high: 255, shape: [2, 2, 3], dtype: "uint8" }),
  wide: rlay.box({ low: -Infinity, high: Infinity, shape: [2], dtype: "int64" }),
  half: rlay.box({ low: -2, high: 2, shape: [3], dtype: "float16" }),
  disc: rlay.discrete(5, { start: -2 }),
  md: rlay.multiDiscrete([3, 4]),
  mb: rlay.multiBinary(4),
  text: rlay.text(5, { minLength: 1, charset: "abcxyz" }),
  tuple: rlay.tuple([rlay.discrete(3), rlay.box({ low: -5, high: 5, shape: [2], dtype: "int16" })]),
  seq: rlay.sequence(rlay.discrete(3)),
  graph: rlay.graph(rlay.box({ low: -1, high: 1, shape: [2], ...f32 }), rlay.discrete(3)),
  one_of: rlay.oneOf([rlay.discrete(3), rlay.box({ low: 0, high: 1, shape: [2], ...f32 })]),
});

const env = new rlay.EnvSide({ observationSpace: space, actionSpace: space, name: "Echo-v0", metadata: { render_fps: 4 } });
const info = {
  int: 3,
  big: 2n ** 63n,
  neg: -7,
  float: 0.25,
  whole_float: rlay.float(2),
  str: "héllo ✓",
  bytes: new Uint8Array([0, 1, 255]),
  nil: null,
  flag: true,
  list: [1, "a", [false]],
  nested: { deep: { x: 1.5 } },
  tensor: rlay.tensor("int32", [2, 2], [1, 2, 3, 4]),
  floats: new Float64Array([0.5, -0.5]),
};
await rlay.open(env, process.argv.slice(2));
try {
  await env.serve({
    reset(seed, options) {
      return [sample(), { seed: seed ?? null, options }];
    },
    step(action) {
      return [action, 0.5, false, false, info];
    },
    calls: {
      echo: (...args) => args,
      boom() {
        throw new TypeError("boom from the env");
      },
      quit() {
        env.shutdown("the player closed the game");
      },
    },
  });
} catch (e) {
  process.stderr.write(`echo: ${e.message}\n`);
  process.exit(1);
}

function sample() {
  return {
    box: new Float32Array(6),
    image: new Uint8Array(12),
    wide: [0, 0],
    half: [0, 0.5, -1],
    disc: -2,
    md: [0, 0],
    mb: [0, 1, 0, 1],
    text: "abc",
    tuple: [1, [2, -3]],
    seq: [0, 1, 2],
    graph: { nodes: rlay.tensor("float32", [1, 2], [0.5, 0.5]), edges: null, edgeLinks: null },
    one_of: [0, 2],
  };
}
