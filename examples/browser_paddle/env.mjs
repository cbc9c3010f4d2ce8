// The Paddle game as an rlay env side, in loop style: whoever owns the main loop (the page's
// requestAnimationFrame, or headless.mjs's fixed-step timer) calls `tick()` once per frame. It
// never blocks: it polls for the next command, and a STEP advances the game one fixed tick.
import { PaddleGame, WIDTH, HEIGHT, rgbFrame } from "./game.mjs";

export function makeEnv(rlay) {
  return new rlay.EnvSide({
    observationSpace: rlay.box({ low: -2, high: 2, shape: [5], dtype: "float32" }),
    actionSpace: rlay.discrete(3),
    metadata: { render_modes: ["rgb_array"], render_fps: 60 },
    renderMode: "rgb_array",
    name: "Paddle-v0",
  });
}

/**
 * Serves `env` with `game`. `readPixels()` draws the current scene and returns its RGBA pixels
 * (the page draws on its canvas and reads the canvas back; headless draws into a buffer). Returns tick(): call it every frame.
 * It answers every command that is ready (at most `maxPerFrame`), so a trainer is not held to
 * the display's frame rate; the page redraws after each tick.
 */
export function serveInLoop(rlay, env, game, readPixels, { maxPerFrame = 64 } = {}) {
  return function tick() {
    let answered = 0;
    for (; answered < maxPerFrame; answered++) {
      const cmd = env.poll();
      if (!cmd) break;
      try {
        switch (cmd.kind) {
          case "reset":
            game.reset(cmd.seed);
            cmd.reply(game.observe(), {});
            break;
          case "step": {
            const [reward, terminated, truncated] = game.step(Number(cmd.action));
            cmd.reply(game.observe(), reward, terminated, truncated, { score: game.score });
            break;
          }
          case "render":
            cmd.reply(rgbFrame(rlay, readPixels(), WIDTH, HEIGHT));
            break;
          case "call":
            if (cmd.name === "score") cmd.reply(game.score);
            else cmd.fail(new rlay.EnvError(rlay.ErrorCode.NOT_SUPPORTED, `Paddle has no function named ${JSON.stringify(cmd.name)}`));
            break;
          case "close":
            cmd.reply();
            break;
        }
      } catch (e) {
        cmd.fail(e); // an exception in game code: ENV_EXCEPTION with its stack, the session goes on
      }
    }
    return answered; // how many commands this frame answered
  };
}
