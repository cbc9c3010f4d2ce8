"""RLlib over rlay: every env runner launches its own env programs (the ``rllib`` extra).

:func:`env_creator` is an RLlib env creator. Each env runner (a Ray actor, on whichever node Ray
puts it) calls it, and rlay starts the env programs there, on private unix sockets in that
runner's process — no port is chosen, opened or shared, and a runner that dies (even by
``kill -9``) takes its programs with it (:mod:`rlay.launch`: the programs see their connection
close, and a parent-death signal ends their process group)::

    import rlay.rllib
    from ray.rllib.algorithms.ppo import PPOConfig

    rlay.rllib.register("rlay")  # ray.tune.register_env("rlay", rlay.rllib.env_creator)
    config = (
        PPOConfig()
        .environment("rlay", env_config={"launch": ["./cartpole", "--num-envs", "{num_envs}"]})
        .env_runners(num_env_runners=2, num_envs_per_env_runner=8,
                     gym_env_vectorize_mode="vector_entry_point")
    )

``env_config`` keys (RLlib hands the same dict to every runner):

- ``launch`` (required): the program's arguments, as for ``rlay.ClientEnv(launch=...)``.
- With ``gym_env_vectorize_mode="vector_entry_point"`` RLlib asks for all of a runner's
  ``num_envs_per_env_runner`` envs at once: an argument containing ``{num_envs}`` means *one*
  program hosting that many batched sub-envs (spec §10), started with the number substituted;
  without it, ``num_envs`` programs are started, one env each (``rlay.make_vec``). Either way it
  is one ``rlay.ClientVectorEnv`` in next-step autoreset, the mode RLlib's env runner expects.
- With RLlib's default ``"sync"`` (or ``"async"``) mode, each env is a ``rlay.ClientEnv``
  launching one program.
- ``launch_env`` (optional): variables added to the runner's environment for the programs;
  ``launch_cwd``, ``timeout``, ``connect_timeout``, ``token``: as for ``rlay.ClientEnv``.
  A launched program is authenticated with a fresh secret unless ``token`` (or ``RLAY_TOKEN``
  in the runner's environment) says otherwise (spec §7.1).

For env sides that run elsewhere and stay up (``rlay serve``, a game server: each connection
its own env), give ``address`` instead of ``launch``: one address that every runner dials, or a
list with one per runner (runner ``i`` dials ``address[i - 1]``, by RLlib's ``worker_index``;
with RLlib's ``"sync"`` vectorize mode, as its ``vector_entry_point`` mode does not tell the
runner's index). See ``docs/rllib.md`` for that recipe with ``RLAY_TOKEN`` and TLS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from rlay.envs import ClientEnv
from rlay.envs.vector import ClientVectorEnv
from rlay.errors import UsageError

__all__ = ["NUM_ENVS", "env_creator", "register"]

#: In ``env_config["launch"]``: replaced by the number of sub-envs one program is to host.
NUM_ENVS = "{num_envs}"

_OPTIONS = ("launch_cwd", "timeout", "connect_timeout", "token")


def env_creator(config: Mapping[str, Any]) -> Any:
    """An rlay env for one RLlib env runner, as ``config`` (RLlib's ``EnvContext``) describes.

    Returns a ``rlay.ClientVectorEnv`` when RLlib passes ``num_envs`` (vectorize mode
    ``"vector_entry_point"``), else a ``rlay.ClientEnv``."""
    launch = config.get("launch")
    address = config.get("address")
    if (launch is None) == (address is None):
        raise UsageError(
            "rlay.rllib.env_creator needs env_config['launch'] (the env program's arguments) "
            "or env_config['address'] (an env side already listening), exactly one of them; "
            f"got keys {sorted(config)}"
        )
    if launch is not None and (isinstance(launch, str) or not isinstance(launch, Sequence) or not launch):
        raise UsageError(f"env_config['launch'] must be a list of arguments, got {launch!r}")
    options: dict[str, Any] = {key: config[key] for key in _OPTIONS if key in config}
    if config.get("launch_env"):
        options["launch_env"] = {**os.environ, **{str(k): str(v) for k, v in config["launch_env"].items()}}
    if address is not None:
        address = _pick(address, config)
    num_envs = config.get("num_envs")
    if num_envs is None:
        if launch is not None:
            return ClientEnv(launch=list(launch), **options)
        return ClientEnv(address, **options)
    num_envs = int(num_envs)
    if launch is None:
        env = ClientVectorEnv(address, autoreset_mode="next_step", **options)
    elif any(NUM_ENVS in str(arg) for arg in launch):
        batch = [str(arg).replace(NUM_ENVS, str(num_envs)) for arg in launch]
        env = ClientVectorEnv(launch=batch, autoreset_mode="next_step", **options)
    else:
        env = ClientVectorEnv(
            launch=list(launch), num_processes=num_envs, autoreset_mode="next_step", **options
        )
    if env.num_envs != num_envs:
        env.close()
        fix = (
            f"start it with {num_envs} sub-envs, or use gym_env_vectorize_mode='sync' (one session per env)"
            if launch is None
            else f"put '{NUM_ENVS}' in the program's arguments where it takes its number of sub-envs, "
            "or launch programs that host one env each"
        )
        raise UsageError(
            f"RLlib asked this env runner for {num_envs} envs (num_envs_per_env_runner), "
            f"the env side(s) host {env.num_envs}: {fix}"
        )
    return env


def _pick(address: str | Sequence[str], config: Mapping[str, Any]) -> str:
    """One address, or the one for this runner (``worker_index`` 1…N; 0 is the local runner)."""
    if isinstance(address, str):
        return address
    if not address:
        raise UsageError("env_config['address'] is an empty list")
    index = getattr(config, "worker_index", None)
    if index is None:
        # RLlib 2.60's vector_entry_point mode passes `env_ctx | {"num_envs": n}`: a plain dict,
        # without the runner's worker_index.
        raise UsageError(
            "env_config['address'] is a list (one env side per env runner), but RLlib did not say "
            "which runner this is (its 'vector_entry_point' mode drops worker_index): use "
            "gym_env_vectorize_mode='sync' with an address list, or give one address"
        )
    return str(address[max(int(index) - 1, 0) % len(address)])


def register(name: str = "rlay") -> str:
    """Register :func:`env_creator` with Ray under ``name`` (for ``config.environment(name)``)."""
    try:
        from ray.tune.registry import register_env
    except ImportError as exc:
        raise ImportError(f"rlay.rllib needs Ray RLlib: pip install 'rlay-gym[rllib]' ({exc})") from None
    register_env(name, env_creator)
    return name
