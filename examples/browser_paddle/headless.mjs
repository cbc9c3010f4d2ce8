// The Paddle game with no browser: the same game and env code as the page, run under node as an
// rlay env side over tcp or unix. Its main loop is the page's "free pace" one: wait until a
// command is queued (env.ready(), never busy), tick (poll and answer what is there), repeat.
//
//   node examples/browser_paddle/headless.mjs --listen tcp://127.0.0.1:0   # rlay.ClientEnv
//   node examples/browser_paddle/headless.mjs --connect tcp://HOST:PORT   # rlay.ServerEnv
// Without a flag the launcher's RLAY_ADDRESS / RLAY_MODE decide.
import * as rlay from "../../sdk/js/rlay.mjs";
import { PaddleGame, WIDTH, HEIGHT } from "./game.mjs";
import { makeEnv, serveInLoop } from "./env.mjs";

const game = new PaddleGame();
const env = makeEnv(rlay);
const pixels = new Uint8ClampedArray(WIDTH * HEIGHT * 4);
const tick = serveInLoop(rlay, env, game, () => game.draw(pixels));

try {
  await rlay.open(env, process.argv.slice(2));
} catch (e) {
  process.stderr.write(`paddle: ${e.message}\n`);
  process.exit(2);
}
while (!env.finished) {
  await env.ready();
  tick();
}
const error = env.error;
// spec section 15: exit 0 after CLOSE or end of stream in idle (env.error is null then); any
// other end, the agent vanishing mid-command included, exits 1 with one line on stderr
if (error) {
  process.stderr.write(`paddle: ${error.message}\n`);
  process.exit(1);
}
