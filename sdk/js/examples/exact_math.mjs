// sin and cos for float64 that return the bits glibc's libm returns, so that a JavaScript env
// reproduces a Python/numpy env (which calls glibc) exactly.
//
// Why not Math.sin/Math.cos: V8's are an fdlibm port. Both they and glibc are accurate to about
// half an ulp, but they round differently: measured on 1.2 million arguments in [-3, 3], about
// 1.5% of V8's results differ from glibc's in the last bit, and one different bit in CartPole's
// theta changes the rest of the trajectory. Correct rounding does not help either: glibc (since
// 2.28) is not correctly rounded (errors up to 0.548 ulp), so a correctly rounded sin still
// differs from it on about 0.3% of arguments.
//
// So this file evaluates glibc's published method (its IBM Accurate Mathematical Library sin/cos,
// dbl-64 s_sin.c) operation by operation in float64: the same polynomial coefficients, the same
// table of sin/cos at multiples of 1/128 as double-doubles, the same order of operations. The
// coefficients are written below; the table is *computed* here in double-double arithmetic (the
// correctly rounded sin/cos of i/128 and their rounding errors). tests/sdk/test_js_sdk.py checks
// the result against Python's math.sin/math.cos bit for bit on a million arguments.
//
// Covered: |x| < 105414350 (glibc's own limit for its fast range reduction); beyond that (never
// reached by a physics step) Math.sin/Math.cos are used and bit identity is not claimed.

const F = new Float64Array(1);
const W = new Uint32Array(F.buffer); // little-endian hosts: W[0] is the low word
function lowWord(x) {
  F[0] = x;
  return W[0];
}
function highWord(x) {
  F[0] = x;
  return W[1];
}
function hex(h) {
  // a float64 from its 16 hex digits (exact constants, no decimal rounding involved)
  const b = new DataView(new ArrayBuffer(8));
  b.setBigUint64(0, BigInt("0x" + h));
  return b.getFloat64(0);
}

// glibc's coefficients (usncs.h and s_sin.c), as exact bit patterns
const s1 = hex("bfc5555555555555");
const s2 = hex("3f81111111110ece");
const s3 = hex("bf2a01a019db08b8");
const s4 = hex("3ec71de27b9a7ed9");
const s5 = hex("be5addffc2fcdf59");
const big = hex("42c8000000000000"); // 1.5 * 2^45: adding it rounds to a multiple of 1/128
const hp0 = hex("3ff921fb54442d18");
const hp1 = hex("3c91a62633145c07");
const mp1 = hex("3ff921fb58000000");
const mp2 = hex("be4dde973c000000");
const pp3 = hex("bc8cb3b398000000");
const pp4 = hex("bacd747f23e32ed7");
const hpinv = hex("3fe45f306dc9c883");
const toint = hex("4338000000000000");
const sn3 = -1.66666666666664880952546298448555e-1;
const sn5 = 8.33333214285722277379541354343671e-3;
const cs2 = 4.99999999999999999999950396842453e-1;
const cs4 = -4.16666666666664434524222570944589e-2;
const cs6 = 1.38888874007937613028114285595617e-3;

// ---- double-double arithmetic, only to build the table ----
const SPLIT = 134217729;
function twoSum(a, b) {
  const s = a + b;
  const bb = s - a;
  return [s, a - (s - bb) + (b - bb)];
}
function twoProd(a, b) {
  const p = a * b;
  let c = SPLIT * a;
  const ah = c - (c - a);
  const al = a - ah;
  c = SPLIT * b;
  const bh = c - (c - b);
  const bl = b - bh;
  return [p, ah * bh - p + ah * bl + al * bh + al * bl];
}
function ddAdd(a, b) {
  const [s, e] = twoSum(a[0], b[0]);
  return twoSum(s, e + a[1] + b[1]);
}
function ddMul(a, b) {
  const [p, e] = twoProd(a[0], b[0]);
  return twoSum(p, e + a[0] * b[1] + a[1] * b[0]);
}
function ddDivInt(a, d) {
  const q1 = a[0] / d;
  const [p, pe] = twoProd(q1, d);
  return twoSum(q1, (a[0] - p - pe + a[1]) / d);
}
const INV_FACT = [[1, 0]];
for (let n = 1; n <= 34; n++) INV_FACT.push(ddDivInt(INV_FACT[n - 1], n));
function ddSeries(x, first) {
  // sum over n = first, first+2, ... of (-1)^((n-first)/2) x^n / n!  (|x| < 1)
  const x2 = ddMul(x, x);
  let acc = [0, 0];
  for (let n = first + 30; n > first; n -= 2) {
    const c = ((n - first) / 2) % 2 === 1 ? [-INV_FACT[n][0], -INV_FACT[n][1]] : INV_FACT[n];
    acc = ddMul(ddAdd(acc, c), x2);
  }
  const lead = first === 0 ? [1, 0] : x;
  return ddAdd(lead, first === 0 ? acc : ddMul(acc, x));
}

// TABLE[4i..4i+3] = sin(i/128) high, low, cos(i/128) high, low
const TABLE = new Float64Array(4 * 112);
for (let i = 0; i < 112; i++) {
  const x = [i / 128, 0];
  const s = ddSeries(x, 1);
  const c = ddSeries(x, 0);
  TABLE.set([s[0], s[1], c[0], c[1]], 4 * i);
}

// ---- fused multiply-add ----
// glibc on x86-64 picks, at load time, a build of sin/cos compiled with -mfma -mavx2 when the CPU
// has FMA and AVX2 (sysdeps/x86_64/fpu/multiarch); GCC then contracts every a * b + c of the
// source into one fused multiply-add (one rounding). FUSED says which build numpy's libm runs
// here; fma() below computes a * b + c exactly with BigInt and rounds once.
const DV = new DataView(new ArrayBuffer(8));
function decompose(x) {
  // x = m * 2^e exactly, m a BigInt
  DV.setFloat64(0, x);
  const hi = DV.getUint32(0);
  const lo = DV.getUint32(4);
  const bexp = (hi >>> 20) & 0x7ff;
  let m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (bexp) m |= 1n << 52n;
  if (hi >>> 31) m = -m;
  return [m, (bexp || 1) - 1075];
}
function scale(v, e) {
  // v * 2^e in steps that stay in range (exact while the result is normal)
  while (e > 0) { const s = Math.min(e, 1000); v *= 2 ** s; e -= s; }
  while (e < 0) { const s = Math.max(e, -1000); v *= 2 ** s; e -= s; }
  return v;
}
function fmaExact(a, b, c) {
  if (a === 0 || b === 0 || c === 0 || !Number.isFinite(a * b) || !Number.isFinite(c)) return a * b + c;
  const [ma, ea] = decompose(a);
  const [mb, eb] = decompose(b);
  const [mc, ec] = decompose(c);
  const mp = ma * mb;
  const ep = ea + eb;
  const e = Math.min(ep, ec);
  if (Math.abs(ep - ec) > 400) return a * b + c; // one term is below the other's rounding
  const sum = (mp << BigInt(ep - e)) + (mc << BigInt(ec - e));
  if (sum === 0n) return 0;
  // Number(BigInt) rounds to nearest even; drop low bits first, keeping a sticky bit
  const neg = sum < 0n;
  let mag = neg ? -sum : sum;
  let shift = 0;
  const bits = mag.toString(2).length;
  if (bits > 64) {
    shift = bits - 64;
    const low = mag & ((1n << BigInt(shift)) - 1n);
    mag >>= BigInt(shift);
    if (low) mag |= 1n;
  }
  const r = scale(Number(mag), e + shift);
  return neg ? -r : r;
}
function plainFma(a, b, c) {
  return a * b + c;
}
/**
 * Whether numpy's libm here runs glibc's FMA build: x86-64 Linux with FMA and AVX2 (what glibc's
 * ifunc checks). On aarch64 Linux GCC contracts by default, so the fused form is assumed there
 * too (not verified: no such machine was at hand). `readFile` reads /proc/cpuinfo (default:
 * node:fs when the runtime offers process.getBuiltinModule).
 */
export function detectFused(readFile = null) {
  if (typeof process === "undefined" || process.platform !== "linux") return false;
  if (process.arch === "arm64") return true;
  if (process.arch !== "x64") return false;
  try {
    const read = readFile ?? ((path) => process.getBuiltinModule("node:fs").readFileSync(path, "utf8"));
    const flags = (read("/proc/cpuinfo").match(/^flags\s*:(.*)$/m) || ["", ""])[1].split(/\s+/);
    return flags.includes("fma") && flags.includes("avx2");
  } catch {
    return false;
  }
}
export let FUSED = detectFused();
let fma = FUSED ? fmaExact : plainFma;
/** Choose the glibc build to reproduce: true = the FMA build, false = the SSE2 one. */
export function setFused(on) {
  FUSED = !!on;
  fma = FUSED ? fmaExact : plainFma;
}
export { fmaExact as fma };

function doCos(x, dx) {
  if (x < 0) dx = -dx;
  const u = big + Math.abs(x);
  x = Math.abs(x) - (u - big) + dx;
  const xx = x * x;
  const s = fma(x * xx, fma(xx, sn5, sn3), x);
  const c = xx * fma(xx, fma(xx, cs6, cs4), cs2);
  const k = lowWord(u) << 2;
  const sn = TABLE[k], ssn = TABLE[k + 1], cs = TABLE[k + 2], ccs = TABLE[k + 3];
  const cor = fma(-sn, s, fma(-cs, c, fma(-s, ssn, ccs)));
  return cs + cor;
}

function doSin(x, dx) {
  const xold = x;
  if (Math.abs(x) < 0.126) {
    const xx = x * x;
    const poly = fma(fma(fma(fma(s5, xx, s4), xx, s3), xx, s2), xx, s1);
    const t = fma(fma(poly, x, -(0.5 * dx)), xx, dx);
    return x + t;
  }
  if (x <= 0) dx = -dx;
  const u = big + Math.abs(x);
  x = Math.abs(x) - (u - big);
  const xx = x * x;
  const s = x + fma(x * xx, fma(xx, sn5, sn3), dx);
  const c = fma(xx, fma(xx, fma(xx, cs6, cs4), cs2), x * dx);
  const k = lowWord(u) << 2;
  const sn = TABLE[k], ssn = TABLE[k + 1], cs = TABLE[k + 2], ccs = TABLE[k + 3];
  const cor = fma(cs, s, fma(-sn, c, fma(s, ccs, ssn)));
  const r = sn + cor;
  return xold < 0 || Object.is(xold, -0) ? -Math.abs(r) : Math.abs(r);
}

function reduce(x) {
  const t = x * hpinv + toint;
  const xn = t - toint;
  const n = lowWord(t) & 3;
  const y = x - xn * mp1 - xn * mp2;
  let t1 = xn * pp3;
  const t2 = y - t1;
  let db = y - t2 - t1;
  t1 = xn * pp4;
  const b = t2 - t1;
  db += t2 - b - t1;
  return [n, b, db];
}

function quadrant(n, a, da) {
  const r = n & 1 ? doCos(a, da) : doSin(a, da);
  return n & 2 ? -r : r;
}

/** sin(x), the bits glibc returns. */
export function sin(x) {
  const k = highWord(x) & 0x7fffffff;
  if (k < 0x3e500000) return x;
  if (k < 0x3feb6000) return doSin(x, 0);
  if (k < 0x400368fd) {
    const r = doCos(hp0 - Math.abs(x), hp1);
    return x < 0 ? -Math.abs(r) : Math.abs(r);
  }
  if (k < 0x419921fb) {
    const [n, a, da] = reduce(x);
    return quadrant(n, a, da);
  }
  return Math.sin(x);
}

/** cos(x), the bits glibc returns. */
export function cos(x) {
  const k = highWord(x) & 0x7fffffff;
  if (k < 0x3e400000) return 1.0;
  if (k < 0x3feb6000) return doCos(x, 0);
  if (k < 0x400368fd) {
    const y = hp0 - Math.abs(x);
    const a = y + hp1;
    const da = y - a + hp1;
    return doSin(a, da);
  }
  if (k < 0x419921fb) {
    const [n, a, da] = reduce(x);
    return quadrant(n + 1, a, da);
  }
  return Math.cos(x);
}
