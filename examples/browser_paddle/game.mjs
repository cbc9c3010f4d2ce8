// Paddle: a small arcade game (keep the ball in play with a paddle at the bottom), written with no
// DOM so that the same code runs in the page (index.html) and headless under node (headless.mjs).
//
// The world is 160 x 120 pixels. The ball bounces off the walls and the ceiling; the paddle moves
// left (action 0), stays (1) or moves right (2). Each hit of the paddle scores 1 and speeds the
// ball up a little; a miss ends the episode (terminated); 2000 steps end it too (truncated).
// One step is one fixed tick of 1/60 s of game time.

export const WIDTH = 160;
export const HEIGHT = 120;
export const PADDLE_W = 28;
export const PADDLE_H = 4;
export const PADDLE_Y = HEIGHT - 10;
export const BALL = 4;
export const MAX_STEPS = 2000;
const PADDLE_SPEED = 3;

/** mulberry32: a tiny seeded generator, so that reset(seed) is reproducible. */
function rng32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class PaddleGame {
  constructor() {
    this.random = rng32(Date.now());
    this.reset();
  }

  /** Starts a round; `seed` (a number or BigInt) makes it reproducible. */
  reset(seed = null) {
    if (seed !== null && seed !== undefined) this.random = rng32(Number(BigInt.asUintN(32, BigInt(seed))));
    this.paddle = WIDTH / 2;
    this.x = 20 + this.random() * (WIDTH - 40);
    this.y = 20;
    const angle = (this.random() - 0.5) * 1.2; // radians from straight down
    const speed = 1.6;
    this.vx = speed * Math.sin(angle);
    this.vy = speed * Math.cos(angle);
    this.score = 0;
    this.steps = 0;
    this.over = false;
  }

  /** Advances one tick; returns [reward, terminated, truncated]. */
  step(action) {
    if (action !== 0 && action !== 1 && action !== 2) throw new RangeError(`action must be 0, 1 or 2, actual ${action}`);
    this.paddle = Math.min(WIDTH - PADDLE_W / 2, Math.max(PADDLE_W / 2, this.paddle + (action - 1) * PADDLE_SPEED));
    this.x += this.vx;
    this.y += this.vy;
    if (this.x < BALL / 2) {
      this.x = BALL - this.x;
      this.vx = -this.vx;
    } else if (this.x > WIDTH - BALL / 2) {
      this.x = 2 * (WIDTH - BALL / 2) - this.x;
      this.vx = -this.vx;
    }
    if (this.y < BALL / 2) {
      this.y = BALL - this.y;
      this.vy = -this.vy;
    }
    let reward = 0;
    const bottom = this.y + BALL / 2;
    if (this.vy > 0 && bottom >= PADDLE_Y && bottom <= PADDLE_Y + PADDLE_H + this.vy) {
      const off = (this.x - this.paddle) / (PADDLE_W / 2 + BALL / 2);
      if (Math.abs(off) <= 1) {
        reward = 1;
        this.score += 1;
        const speed = Math.min(4, Math.hypot(this.vx, this.vy) * 1.05);
        const angle = off * 1.0; // where it hits the paddle steers the bounce
        this.vx = speed * Math.sin(angle);
        this.vy = -speed * Math.cos(angle);
        this.y = PADDLE_Y - BALL / 2;
      }
    }
    this.steps += 1;
    const terminated = this.y - BALL / 2 > HEIGHT;
    this.over = terminated;
    return [reward, terminated, this.steps >= MAX_STEPS];
  }

  /** The observation: ball x, y, vx, vy and paddle x, scaled to about [-1, 1] (float32). */
  observe() {
    return new Float32Array([
      (this.x / WIDTH) * 2 - 1,
      (this.y / HEIGHT) * 2 - 1,
      this.vx / 4,
      this.vy / 4,
      (this.paddle / WIDTH) * 2 - 1,
    ]);
  }

  /** Draws the scene into `rgba` (WIDTH * HEIGHT * 4 bytes, as a canvas ImageData holds it). */
  draw(rgba) {
    const put = (x0, y0, w, h, r, g, b) => {
      const xa = Math.max(0, Math.round(x0)), xb = Math.min(WIDTH, Math.round(x0 + w));
      const ya = Math.max(0, Math.round(y0)), yb = Math.min(HEIGHT, Math.round(y0 + h));
      for (let y = ya; y < yb; y++)
        for (let x = xa; x < xb; x++) {
          const i = (y * WIDTH + x) * 4;
          rgba[i] = r;
          rgba[i + 1] = g;
          rgba[i + 2] = b;
          rgba[i + 3] = 255;
        }
    };
    put(0, 0, WIDTH, HEIGHT, 16, 24, 48); // background
    put(0, 0, WIDTH, 2, 90, 90, 120); // ceiling
    put(this.paddle - PADDLE_W / 2, PADDLE_Y, PADDLE_W, PADDLE_H, 240, 200, 60); // paddle
    put(this.x - BALL / 2, this.y - BALL / 2, BALL, BALL, 250, 250, 250); // ball
    for (let i = 0; i < Math.min(this.score, 40); i++) put(4 + i * 4, 4, 2, 2, 80, 220, 120); // score pips
    return rgba;
  }
}

/** RGBA pixels (a canvas's ImageData.data) -> an rgb_array frame: a uint8 tensor (H, W, 3). */
export function rgbFrame(rlay, rgba, width = WIDTH, height = HEIGHT) {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return rlay.tensor("uint8", [height, width, 3], rgb);
}
