// CartPole-v1 in JavaScript, served as a Gymnasium env over rlay (callback style): one CartPole,
// or with --num-envs N a batch of N on one connection (spec section 10).
//
// Bit-identical to Gymnasium's CartPole-v1 (gymnasium/envs/classic_control/cartpole.py): euler
// integration in float64 with the same expressions in the same order, float32 observations,
// reward 1.0 (0.0 for steps after termination), termination at |x| > 2.4 or |theta| > 12
// degrees, the 500-step truncation of gym.make's TimeLimit. sin/cos come from exact_math.mjs
// (glibc's bits, which numpy gets), not Math.sin/Math.cos (V8's differ in the last bit).
//
// Reset draws numpy's Generator(PCG64(SeedSequence(seed))).uniform(low, high, size=4), reproduced
// below with BigInt; a reset without a seed continues the stream. Options: "low"/"high" (the
// uniform's bounds), "state" (float64 tensor (4,), or (N, 4) for a batch: the exact initial state).
// CALL "get_state" returns the float64 state (an array of N for a batch). A batch autoresets as
// Gymnasium 1.x's AutoresetMode.NEXT_STEP.
//
// Usage: cartpole --listen [ADDRESS] | --connect [ADDRESS] [--num-envs N] [--render-mode rgb_array]
// Without flags the launcher's RLAY_ADDRESS / RLAY_MODE decide.
import * as rlay from "../rlay.mjs";
import { sin, cos, setFused, detectFused } from "./exact_math.mjs";
import { readFileSync } from "node:fs";

// ---- numpy's stream: SeedSequence(seed) -> PCG64 -> Generator.random -----------------------
const M128 = (1n << 128n) - 1n;
const MULT = (2549297995355413924n << 64n) + 4865540595714422341n; // PCG_DEFAULT_MULTIPLIER_128
const M64 = (1n << 64n) - 1n;

export class PCG64 {
  constructor(seed) {
    // SeedSequence(seed).generate_state(4, uint64): hashmix/mix on a pool of 4 uint32 words
    let s = BigInt(seed);
    const entropy = [];
    do {
      entropy.push(Number(s & 0xffffffffn));
      s >>= 32n;
    } while (s > 0n);
    let h = 0x43b0d7e5;
    const hashmix = (v) => {
      v = (v ^ h) >>> 0;
      h = Math.imul(h, 0x931e8875) >>> 0;
      v = Math.imul(v, h) >>> 0;
      return (v ^ (v >>> 16)) >>> 0;
    };
    const mix = (x, y) => {
      const r = (Math.imul(0xca01f9dd, x) - Math.imul(0x4973f715, y)) >>> 0;
      return (r ^ (r >>> 16)) >>> 0;
    };
    const pool = [0, 0, 0, 0];
    for (let i = 0; i < 4; i++) pool[i] = hashmix(i < entropy.length ? entropy[i] : 0);
    for (let i = 4; i < entropy.length; i++) for (let j = 0; j < 4; j++) pool[j] = mix(pool[j], hashmix(entropy[i]));
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) if (i !== j) pool[j] = mix(pool[j], hashmix(pool[i]));
    h = 0x8b51f9dd;
    const words = [];
    for (let i = 0; i < 8; i++) {
      let d = (pool[i % 4] ^ h) >>> 0;
      h = Math.imul(h, 0x58f38ded) >>> 0;
      d = Math.imul(d, h) >>> 0;
      words.push((d ^ (d >>> 16)) >>> 0);
    }
    const u64 = (lo, hi) => (BigInt(hi) << 32n) | BigInt(lo);
    const initstate = (u64(words[0], words[1]) << 64n) | u64(words[2], words[3]);
    const initseq = (u64(words[4], words[5]) << 64n) | u64(words[6], words[7]);
    this.inc = ((initseq << 1n) | 1n) & M128;
    this.state = 0n;
    this.step();
    this.state = (this.state + initstate) & M128;
    this.step();
  }
  step() {
    this.state = (this.state * MULT + this.inc) & M128;
  }
  next64() {
    // XSL-RR output of the advanced state
    this.step();
    const v = ((this.state >> 64n) ^ this.state) & M64;
    const rot = Number(this.state >> 122n);
    return ((v >> BigInt(rot)) | (v << BigInt((64 - rot) & 63))) & M64;
  }
  random() {
    return Number(this.next64() >> 11n) * (1.0 / 9007199254740992.0);
  }
}

// ---- one CartPole, Gymnasium's constants with the same expressions ----------------------------
const gravity = 9.8, masscart = 1.0, masspole = 0.1, length = 0.5, forceMag = 10.0, tau = 0.02;
const totalMass = masspole + masscart;
const polemassLength = masspole * length;
const thetaThreshold = (12 * 2 * Math.PI) / 360;
const xThreshold = 2.4;
const MAX_STEPS = 500;

class CartPole {
  constructor() {
    this.s = new Float64Array(4);
    this.rng = null;
    this.elapsed = 0;
    this.beyond = -1; // steps_beyond_terminated; -1 is None
  }
  reset(seed, low, high, state) {
    if (seed !== null && seed !== undefined) this.rng = new PCG64(seed);
    else if (!this.rng) this.rng = new PCG64(BigInt(Date.now()) ^ (BigInt(Math.floor(Math.random() * 2 ** 32)) << 40n));
    for (let k = 0; k < 4; k++) this.s[k] = state ? state[k] : low + (high - low) * this.rng.random();
    this.elapsed = 0;
    this.beyond = -1;
  }
  step(action) {
    let [x, xDot, theta, thetaDot] = this.s;
    const force = action === 1 ? forceMag : -forceMag;
    const costheta = cos(theta);
    const sintheta = sin(theta);
    const temp = (force + polemassLength * (thetaDot * thetaDot) * sintheta) / totalMass;
    const thetaacc = (gravity * sintheta - costheta * temp) / (length * (4.0 / 3.0 - (masspole * (costheta * costheta)) / totalMass));
    const xacc = temp - (polemassLength * thetaacc * costheta) / totalMass;
    x = x + tau * xDot;
    xDot = xDot + tau * xacc;
    theta = theta + tau * thetaDot;
    thetaDot = thetaDot + tau * thetaacc;
    this.s.set([x, xDot, theta, thetaDot]);
    const terminated = x < -xThreshold || x > xThreshold || theta < -thetaThreshold || theta > thetaThreshold;
    let reward;
    if (!terminated) reward = 1.0;
    else if (this.beyond < 0) {
      this.beyond = 0;
      reward = 1.0;
    } else {
      this.beyond++;
      reward = 0.0;
    }
    this.elapsed++;
    return [reward, terminated, this.elapsed >= MAX_STEPS];
  }
}

// ---- rendering (Gymnasium's layout, no antialiasing), 600x400 rgb_array --------------------
const W = 600, H = 400;
function fillPoly(img, px, py, rgb) {
  const minx = Math.max(0, Math.floor(Math.min(...px))), maxx = Math.min(W - 1, Math.ceil(Math.max(...px)));
  const miny = Math.max(0, Math.floor(Math.min(...py))), maxy = Math.min(H - 1, Math.ceil(Math.max(...py)));
  for (let y = miny; y <= maxy; y++)
    for (let x = minx; x <= maxx; x++) {
      let pos = false, neg = false;
      for (let i = 0; i < px.length; i++) {
        const j = (i + 1) % px.length;
        const cr = (px[j] - px[i]) * (y + 0.5 - py[i]) - (py[j] - py[i]) * (x + 0.5 - px[i]);
        if (cr > 0) pos = true;
        else if (cr < 0) neg = true;
      }
      if (!(pos && neg)) img.set(rgb, ((H - 1 - y) * W + x) * 3);
    }
}
function render(e) {
  const img = new Uint8Array(W * H * 3).fill(255);
  const scale = W / (xThreshold * 2), polelen = scale * (2 * length);
  const cartx = e.s[0] * scale + W / 2, carty = 100, axley = carty + 30 / 4;
  fillPoly(img, [-25, -25, 25, 25].map((v) => v + cartx), [-15, 15, 15, -15].map((v) => v + carty), [0, 0, 0]);
  const a = -e.s[2], lx = [-5, -5, 5, 5], ly = [-5, polelen - 5, polelen - 5, -5];
  fillPoly(img, lx.map((v, i) => v * Math.cos(a) - ly[i] * Math.sin(a) + cartx), lx.map((v, i) => v * Math.sin(a) + ly[i] * Math.cos(a) + axley), [202, 152, 101]);
  for (let y = -5; y <= 5; y++)
    for (let x = -5; x <= 5; x++) {
      const px = Math.trunc(cartx) + x, py = Math.trunc(axley) + y;
      if (x * x + y * y <= 25 && px >= 0 && px < W && py >= 0 && py < H) img.set([129, 132, 203], ((H - 1 - py) * W + px) * 3);
    }
  for (let x = 0; x < W; x++) img.set([0, 0, 0], ((H - 1 - carty) * W + x) * 3);
  return rlay.tensor("uint8", [H, W, 3], img);
}

// ---- the program -----------------------------------------------------------------------------
function usage(msg) {
  process.stderr.write(`cartpole: ${msg}\nusage: cartpole (--listen|--connect) [ADDRESS] [--num-envs N] [--render-mode rgb_array]\n`);
  process.exit(2);
}

async function main(argv) {
  let n = 1, renderMode = null;
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--num-envs") {
      n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1 || n > 65536) usage("--num-envs takes a number in 1..65536");
    } else if (argv[i] === "--render-mode") {
      renderMode = argv[++i];
      if (renderMode !== "rgb_array") usage(`render mode '${renderMode}' is not offered (only rgb_array)`);
    } else if (argv[i] === "--listen" || argv[i] === "--connect") {
      rest.push(argv[i]);
      if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) rest.push(argv[++i]);
    } else usage(`unknown argument ${argv[i]}`);
  }
  // Which libm build numpy's sin/cos run here (glibc picks its FMA build on FMA+AVX2 CPUs).
  setFused(detectFused((path) => readFileSync(path, "utf8")));

  const high = new Float32Array([xThreshold * 2, Infinity, thetaThreshold * 2, Infinity]);
  const env = new rlay.EnvSide({
    observationSpace: rlay.box({ low: high.map((v) => -v), high, shape: [4], dtype: "float32" }),
    actionSpace: rlay.discrete(2),
    metadata: { render_modes: ["rgb_array"], render_fps: 50, ...(n > 1 ? { autoreset_mode: "next_step" } : {}) },
    renderMode,
    name: "CartPole-v1",
    numEnvs: n,
  });
  const envs = Array.from({ length: n }, () => new CartPole());
  const obs = () => {
    const o = new Float32Array(4 * n);
    envs.forEach((e, i) => o.set(e.s, 4 * i));
    return o;
  };
  try {
    await rlay.open(env, rest);
  } catch (e) {
    process.stderr.write(`cartpole: ${e.message}\n`);
    process.exit(e.message.startsWith("no address") ? 2 : 1);
  }
  const handlers = {
    reset(seed, options, cmd) {
      const o = options ?? {};
      let low = -0.05, high = 0.05, state = null;
      if (o.state !== undefined) {
        const t = o.state;
        const ok = t instanceof rlay.Tensor && t.dtype === "float64" && (n === 1 ? t.shape.length === 1 && t.shape[0] === 4 : t.shape.length === 2 && t.shape[0] === n && t.shape[1] === 4);
        if (!ok) throw new ValueError(`the reset option 'state' must be a float64 tensor of shape (${n === 1 ? "4," : `${n}, 4`})`);
        state = t.data;
      } else {
        if (o.low !== undefined) low = Number(o.low);
        if (o.high !== undefined) high = Number(o.high);
        if (Number.isNaN(low) || Number.isNaN(high)) throw new ValueError("the reset options 'low' and 'high' must be numbers");
        if (low > high) throw new ValueError(`Lower bound (${low}) must be lower than higher bound (${high}).`);
      }
      for (let i = 0; i < n; i++) {
        if (n > 1 && !cmd.resetMask[i]) continue;
        envs[i].reset(n > 1 ? cmd.seeds[i] : seed, low, high, state ? state.subarray(4 * i, 4 * i + 4) : null);
      }
      return [obs(), {}];
    },
    step(action, cmd) {
      if (n === 1) {
        const [r, te, tr] = envs[0].step(Number(action));
        return [obs(), r, te, tr, {}];
      }
      const rewards = new Float64Array(n), te = new Array(n).fill(false), tr = new Array(n).fill(false);
      for (let i = 0; i < n; i++) {
        if (cmd.autoreset[i]) envs[i].reset(null, -0.05, 0.05, null); // next-step autoreset
        else [rewards[i], te[i], tr[i]] = envs[i].step(Number(cmd.actions[i]));
      }
      return [obs(), rewards, te, tr, {}];
    },
    render() {
      return n === 1 ? render(envs[0]) : envs.map(render);
    },
    calls: {
      get_state() {
        const s = envs.map((e) => rlay.tensor("float64", [4], Float64Array.from(e.s)));
        return n === 1 ? s[0] : s;
      },
    },
  };
  if (!renderMode) delete handlers.render;
  try {
    await env.serve(handlers);
  } catch (e) {
    // spec section 15: any end but CLOSE or end of stream in idle (the trainer vanishing
    // mid-command included) exits non-zero with one line on stderr
    process.stderr.write(`cartpole: ${e.message}\n`);
    process.exit(1);
  }
}

class ValueError extends Error {
  constructor(m) {
    super(m);
    this.name = "ValueError";
  }
}

main(process.argv.slice(2));
