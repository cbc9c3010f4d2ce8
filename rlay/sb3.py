"""Stable-Baselines3 over rlay's vector envs (the ``sb3`` extra: ``pip install 'rlay[sb3]'``).

SB3 takes its own ``VecEnv``, not a Gymnasium ``VectorEnv``; :class:`SB3VecEnv` is that bridge, so
the fastest way to run many envs — one program hosting a batch of sub-envs (spec §10), or many
programs — trains with SB3 as is::

    import rlay
    from rlay.sb3 import SB3VecEnv
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    venv = rlay.make_vec(["./cartpole", "--listen", "{address}", "--num-envs", "8"],
                         autoreset_mode="same_step")
    model = PPO("MlpPolicy", VecMonitor(SB3VecEnv(venv))).learn(100_000)

SB3's conventions, kept exactly: a step that ends an episode returns the next episode's first
observation, with the last one in ``infos[i]["terminal_observation"]`` (Gymnasium's same-step
autoreset, which the vector env must use); ``dones = terminated | truncated``, and
``infos[i]["TimeLimit.truncated"]`` says a done came from truncation only; rewards are float32.
``env_method`` is rlay's CALL on every sub-env; attributes other than ``render_mode`` and the
spaces are not reachable over the wire (:class:`AttributeError`, as SB3 expects for a missing one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from rlay.errors import UsageError

try:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv
except ImportError as exc:  # pragma: no cover - the extra is part of the test environment
    raise ImportError(f"rlay.sb3 needs Stable-Baselines3: pip install 'rlay[sb3]' ({exc})") from None

__all__ = ["SB3VecEnv"]


class SB3VecEnv(VecEnv):  # type: ignore[misc]
    """A Gymnasium vector env (``rlay.ClientVectorEnv``, ``ServerVectorEnv``, ``make_vec``) as an
    SB3 ``VecEnv``. Closing it closes the vector env (and ends the programs it launched)."""

    def __init__(self, venv: VectorEnv[Any, Any, Any]) -> None:
        mode = getattr(venv, "autoreset_mode", None) or venv.metadata.get("autoreset_mode")
        if mode not in (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP):
            raise UsageError(
                "SB3 needs sub-envs that reset themselves when an episode ends: a vector env with "
                f"autoreset_mode 'same_step' or 'next_step', not {getattr(mode, 'value', mode)!r}"
            )
        #: same-step: the env sides reset in the step that ended an episode, as SB3 wants. next-step
        #: (a batched env side's default): the ended sub-envs are reset at once with a partial
        #: reset (reset_mask), one more round trip on a step where an episode ended.
        self.same_step = mode is AutoresetMode.SAME_STEP
        self.venv: Any = venv  # rlay.ClientVectorEnv / ServerVectorEnv (seed lists, call)
        self._actions: Any = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    # -- stepping --------------------------------------------------------------------------------

    def reset(self) -> Any:
        seeds = list(self._seeds)
        options = [dict(o) for o in self._options]
        if any(o != options[0] for o in options):
            raise UsageError("rlay resets every sub-env with the same options; set one options dict for all")
        obs, info = self.venv.reset(
            seed=None if all(s is None for s in seeds) else seeds, options=options[0] or None
        )
        self.reset_infos = _per_env(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        dones = np.logical_or(terminated, truncated)
        infos = _per_env(info, self.num_envs)
        ended = [int(i) for i in np.flatnonzero(dones)]
        if len(ended) and not self.same_step:
            first, _ = self.venv.reset(options={"reset_mask": dones})
            for i in ended:
                infos[i]["final_obs"] = _item(obs, i)
                obs = _with_item(obs, i, _item(first, i))
        for i in ended:
            final = infos[i].pop("final_info", None)
            if isinstance(final, dict):
                infos[i].update(final)  # SB3 reads an episode's last info at its end
            infos[i]["terminal_observation"] = infos[i].pop("final_obs")
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, np.asarray(reward, dtype=np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    # -- the rest of SB3's VecEnv ----------------------------------------------------------------

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name in ("render_mode", "observation_space", "action_space"):
            single = {
                "render_mode": self.venv.render_mode,
                "observation_space": self.venv.single_observation_space,
                "action_space": self.venv.single_action_space,
            }[attr_name]
            return [single for _ in self._indices(indices)]
        if attr_name in self.venv.attributes:  # one the env side offers (spec §19)
            values = self.venv.get_attr(attr_name)
            return [values[i] for i in self._indices(indices)]
        raise AttributeError(
            f"{attr_name!r} lives in the env program; rlay reaches env code through CALL (env_method) "
            f"and the attributes it offers (offered: {', '.join(self.venv.attributes) or 'none'})"
        )

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        if attr_name not in self.venv.attributes:
            raise AttributeError(
                f"cannot set {attr_name!r}: the env runs in another program, which offers the "
                f"attributes {', '.join(self.venv.attributes) or 'none'} (spec §19; or use env_method)"
            )
        values = list(self.venv.get_attr(attr_name)) if indices is not None else [value] * self.num_envs
        for i in self._indices(indices):
            values[i] = value
        self.venv.set_attr(attr_name, values)

    def env_method(
        self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
    ) -> list[Any]:
        results = list(self.venv.call(method_name, *method_args, **method_kwargs))
        return [results[i] for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._indices(indices)]  # no Python wrapper sits around a remote env

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames: Any = self.venv.render()
        return list(frames) if frames is not None else [None] * self.num_envs

    def _indices(self, indices: Any) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices  # type: ignore[no-any-return]


def _item(batch: Any, i: int) -> Any:
    """Sub-env ``i``'s value out of a batch (arrays, or a dict of them as SB3 supports)."""
    if isinstance(batch, dict):
        return {k: _item(v, i) for k, v in batch.items()}
    return np.array(batch[i])  # a copy: the batch is written over below


def _with_item(batch: Any, i: int, value: Any) -> Any:
    if isinstance(batch, dict):
        return {k: _with_item(v, i, value[k]) for k, v in batch.items()}
    batch = np.array(batch)  # writable (a received batch may be a read-only view)
    batch[i] = value
    return batch


def _per_env(info: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's vector info (arrays plus ``_key`` masks, nested for dicts) as one dict per env."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in info.items():
        if key.startswith("_") and key[1:] in info:
            continue
        mask = info.get(f"_{key}")
        if isinstance(value, dict):
            for i, sub in enumerate(_per_env(value, n)):
                if (mask is None or mask[i]) and sub:
                    out[i][key] = sub
            continue
        for i in range(n):
            if mask is None or mask[i]:
                item = value[i]
                out[i][key] = item.item() if isinstance(item, np.generic) else item
    return out
