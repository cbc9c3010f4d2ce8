"""Agent side: Gymnasium envs whose logic runs in another process (design: layer 4).

- :class:`ClientEnv` dials an env side that listens; :class:`ServerEnv` listens and the env side
  (a game's own main loop) dials in.
- :class:`ClientVectorEnv`, :class:`ServerVectorEnv` and :func:`make_vec`: vector envs over many
  env sides, or over batched sub-envs (spec §10).
"""

from rlay.envs.single import GAME_ADDRESS, ClientEnv, ServerEnv
from rlay.envs.vector import ClientVectorEnv, ServerVectorEnv, make_vec

__all__ = ["GAME_ADDRESS", "ClientEnv", "ClientVectorEnv", "ServerEnv", "ServerVectorEnv", "make_vec"]
