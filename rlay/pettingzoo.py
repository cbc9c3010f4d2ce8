"""Multi-agent envs over rlay as PettingZoo envs (spec/protocol.md §18; the ``pettingzoo`` extra:
``pip install 'rlay[pettingzoo]'``).

Agent side: :class:`ClientParallelEnv` dials an env side that listens (or launches its program),
:class:`ServerParallelEnv` listens for a game that dials in. Both are ``pettingzoo.ParallelEnv``;
for the AEC API wrap one: ``pettingzoo.utils.conversions.parallel_to_aec(env)``::

    from rlay.pettingzoo import ClientParallelEnv

    env = ClientParallelEnv(launch=["./arena"])  # a multi-agent C program (sdk/c)
    obs, infos = env.reset(seed=0)
    while env.agents:
        actions = {a: env.action_space(a).sample() for a in env.agents}
        obs, rewards, terminations, truncations, infos = env.step(actions)
    env.close()

Env side in Python: :func:`serve_parallel` / :func:`connect_parallel` serve a PettingZoo
``ParallelEnv`` (or any object with its API); :class:`MultiAgentSession` is the loop style.
"""

from rlay.backends.multiagent import MultiAgentSession, ParallelServer, connect_parallel, serve_parallel
from rlay.envs.parallel import ClientParallelEnv, ServerParallelEnv
from rlay.errors import AgentMismatch, InvalidAgentAction

__all__ = [
    "AgentMismatch",
    "ClientParallelEnv",
    "InvalidAgentAction",
    "MultiAgentSession",
    "ParallelServer",
    "ServerParallelEnv",
    "connect_parallel",
    "serve_parallel",
]
