// A game with its own frame loop, served as a Gymnasium env in loop style (the JavaScript twin of
// sdk/c/examples/game_loop.c). Every frame the game asks rlay whether a command is waiting
// (env.poll(): never blocks). A STEP is played over FRAME_SKIP frames and only then answered;
// meanwhile poll() returns null. Between commands the game keeps running (about 1 kHz here).
//
// The game: a cart on a line, pushed left (0), right (2) or not (1); obs float32 [x, v]; reward
// -|x|; the episode ends when |x| > 10 (terminated) or after 200 steps (truncated). Arithmetic is
// float32 (Math.fround), as the C game's.
// Usage: node game_loop.mjs --listen [ADDRESS] | --connect [ADDRESS]   (or the launcher variables)
import * as rlay from "../rlay.mjs";

const FRAME_SKIP = 4;
const DT = Math.fround(0.05);
const f = Math.fround;

const env = new rlay.EnvSide({
  observationSpace: rlay.box({ low: -Infinity, high: Infinity, shape: [2], dtype: "float32" }),
  actionSpace: rlay.discrete(3),
  name: "game_loop",
});
try {
  await rlay.open(env, process.argv.slice(2));
} catch (e) {
  process.stderr.write(`game_loop: ${e.message}\n`);
  process.exit(2);
}

let x = 0, v = 0, push = 0, framesLeft = 0, steps = 0, stepCmd = null;
function frame() {
  const cmd = env.poll(); // null while the STEP below is being played
  if (cmd?.kind === "reset") {
    x = v = steps = 0;
    cmd.reply([x, v], {});
  } else if (cmd?.kind === "step") {
    push = Number(cmd.action) - 1; // checked against Discrete(3) by the SDK
    framesLeft = FRAME_SKIP; // answered FRAME_SKIP frames from now
    stepCmd = cmd;
  } else if (cmd?.kind === "close") {
    cmd.reply();
  } else if (cmd) {
    cmd.fail(new rlay.EnvError(rlay.ErrorCode.NOT_SUPPORTED, `game_loop does not answer ${cmd.kind}`));
  }
  if (framesLeft > 0) {
    // one frame of the game
    v = f(v + f(push * DT));
    x = f(x + f(v * DT));
    if (--framesLeft === 0) {
      steps++;
      stepCmd.reply([x, v], -Math.abs(x), x > 10 || x < -10, steps >= 200, { frames: FRAME_SKIP });
    }
  }
  if (env.finished) return;
  if (framesLeft > 0) setImmediate(frame);
  else setTimeout(frame, 1); // nothing to play: wait for the next frame
}
frame();
const error = await env.done;
if (error && !(error instanceof rlay.PeerClosedError)) {
  process.stderr.write(`game_loop: ${error.message}\n`);
  process.exit(1);
}
