// The page: the Paddle game with its own requestAnimationFrame loop. With ?rlay=ws://... in the
// URL it dials Python's rlay.ServerEnv at that address and is driven from Python (each STEP is
// one fixed tick; RENDER answers the canvas pixels as an rgb_array); without it, you play it.
//
// Query parameters: rlay (the ServerEnv's ws:// address); pace=frame (answer commands only in the
// animation loop, one STEP per displayed frame: the game runs at its real speed, ~60 steps/s) or
// pace=free (the default: answer each command as soon as it arrives, for training speed, and
// draw in the animation loop); loop=timer (drive the loop with setTimeout instead of
// requestAnimationFrame, e.g. in a hidden tab, where browsers pause rAF).
import * as rlay from "../../sdk/js/rlay.mjs";
import { PaddleGame, WIDTH, HEIGHT } from "./game.mjs";
import { makeEnv, serveInLoop } from "./env.mjs";

const params = new URLSearchParams(location.search);
const canvas = document.getElementById("screen");
const ctx = canvas.getContext("2d", { willReadFrequently: true });
const status = document.getElementById("status");
const image = ctx.createImageData(WIDTH, HEIGHT);
const game = new PaddleGame();

function draw() {
  game.draw(image.data);
  ctx.putImageData(image, 0, 0);
}
/** RENDER's pixels: the canvas as it is on screen, read back. */
function readCanvas() {
  draw();
  return ctx.getImageData(0, 0, WIDTH, HEIGHT).data;
}
const schedule = params.get("loop") === "timer" ? (f) => setTimeout(f, 4) : (f) => requestAnimationFrame(f);

async function agentMode(address) {
  const env = makeEnv(rlay);
  const tick = serveInLoop(rlay, env, game, readCanvas);
  status.textContent = `dialling ${address}`;
  try {
    await env.connect(address);
  } catch (e) {
    status.textContent = `cannot connect: ${e.message}`;
    window.rlayDone = { error: e.message };
    return;
  }
  status.textContent = `connected to ${address}: the agent plays`;
  env.done.then((error) => {
    status.textContent = error ? `session ended: ${error.message}` : "session over";
    window.rlayDone = { error: error ? error.message : null };
  });
  const paced = params.get("pace") === "frame";
  const frame = () => {
    if (paced) tick();
    draw();
    if (!env.finished) {
      status.textContent = `connected to ${address}: the agent plays; score ${game.score}, step ${game.steps}`;
      schedule(frame);
    }
  };
  schedule(frame);
  if (!paced) {
    // Free pace: wake as soon as a command is queued (env.ready() resolves then), answer what
    // is there, and go back to waiting; the animation loop above only draws.
    while (!env.finished) {
      await env.ready();
      tick();
    }
  }
}

function humanMode() {
  const keys = new Set();
  addEventListener("keydown", (e) => keys.add(e.key));
  addEventListener("keyup", (e) => keys.delete(e.key));
  status.textContent = "you play: left/right arrows or A/D (open with ?rlay=ws://... to let an agent play)";
  const frame = () => {
    const left = keys.has("ArrowLeft") || keys.has("a"), right = keys.has("ArrowRight") || keys.has("d");
    const [, terminated, truncated] = game.step(left && !right ? 0 : right && !left ? 2 : 1);
    if (terminated || truncated) game.reset();
    draw();
    status.textContent = `score ${game.score}`;
    schedule(frame);
  };
  schedule(frame);
}

const address = params.get("rlay");
if (address) agentMode(address);
else humanMode();
