// Compiled (not run) by `npm run check-types`: the declarations in rlay.d.mts accept the
// documented uses under `tsc --strict`, for a drop-in import of ./rlay.mjs.
import * as rlay from "../rlay.mjs";

const env = new rlay.EnvSide({
  observationSpace: rlay.dict({ pos: rlay.box({ low: -1, high: 1, shape: [2], dtype: "float32" }), id: rlay.discrete(3) }),
  actionSpace: rlay.oneOf([rlay.discrete(3), rlay.multiBinary([2, 2]), rlay.text(4, { charset: "ab" })]),
  metadata: { render_fps: 30, render_modes: ["rgb_array"] },
  renderMode: "rgb_array",
  numEnvs: 1,
});

export async function loop(): Promise<void> {
  await rlay.open(env, ["--listen", "tcp://127.0.0.1:0"]);
  await env.ready();
  const cmd: rlay.Command | null = env.poll();
  if (cmd?.kind === "step") cmd.reply({ pos: new Float32Array(2), id: 1 }, 1, false, false, { score: 1n, f: rlay.float(2) });
  else if (cmd?.kind === "render") cmd.reply(rlay.tensor("uint8", [2, 2, 3], new Uint8Array(12)));
  else if (cmd) cmd.fail(new rlay.EnvError(rlay.ErrorCode.NOT_SUPPORTED, "no"));
  const error: rlay.RlayError | null = await env.done;
  if (error instanceof rlay.RemoteError) console.log(error.codeName, error.fatal, error.traceback);
}

export async function callbacks(): Promise<null> {
  return env.serve({
    reset: (seed, options) => [{ pos: [0, 0], id: 0 }, { seed: seed ?? null }],
    step: (action, cmd) => ({ obs: { pos: [0, 0], id: 0 }, reward: 0, terminated: false, truncated: cmd.answered, info: {} }),
    render: () => null,
    calls: { add: (a: number, b: number) => a + b },
    close: async () => {},
  });
}
