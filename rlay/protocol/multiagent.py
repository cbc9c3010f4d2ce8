"""Multi-agent sessions (spec/protocol.md §18), without any I/O: the capability, the state table
of a multi-agent session, and the checks a receiver makes on ENV_INFO and MULTI_RESULT against
what the session knows (the possible agents, the live agents before the command).

Rules this file obeys:
- A side uses §18 only when both HELLOs announced ``"multi_agent": true``; otherwise nothing here
  runs and the session is exactly v1.
- Every fault here is the peer's (``BAD_FIELD``, fatal, like §10's checks against ``num_envs``);
  a wrong *set of agents* in a MULTI_STEP is the agent's mistake and is answered by the env side
  with the non-fatal ``AGENT_MISMATCH`` (that check lives with the env side: it needs no spaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlay.errors import ProtocolError, clip
from rlay.protocol.messages import EnvInfo, MultiResult
from rlay.protocol.wire import ErrorCode

#: §18: the HELLO capability. Its value is ``true``; a side announces it only if it speaks §18.
CAPABILITY = "multi_agent"


def _bad(detail: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, detail)


def peer_announced(capabilities: dict[str, Any]) -> bool:
    """Whether a peer's HELLO announced §18 (``true``); any other value is ``BAD_FIELD``."""
    value = capabilities.get(CAPABILITY)
    if value is None:
        return False
    if value is not True:
        raise _bad(f"HELLO.capabilities.{CAPABILITY} must be true, got {clip(value, 40)}")
    return True


def possible_agents(info: EnvInfo) -> tuple[str, ...]:
    """§18: the possible agents of a multi-agent ENV_INFO: the keys of its two ``dict`` spaces,
    which must be the same keys in the same order (at least one), with ``num_envs`` 1."""
    if info.num_envs != 1:
        raise _bad(f"ENV_INFO.num_envs of a multi-agent session must be 1, got {info.num_envs}")
    keys = []
    for name in ("observation_space", "action_space"):
        desc = getattr(info, name)
        spaces = desc.get("spaces") if desc.get("kind") == "dict" else None
        if type(spaces) is not dict or not spaces:
            raise _bad(
                f"ENV_INFO.{name} of a multi-agent session must be a dict space with one entry per "
                f"possible agent, got kind {clip(desc.get('kind'), 30)}"
            )
        keys.append(tuple(spaces))
    if keys[0] != keys[1]:
        raise _bad(
            "ENV_INFO.observation_space and action_space of a multi-agent session must list the same "
            f"agents in the same order, got {clip(list(keys[0]), 80)} and {clip(list(keys[1]), 80)}"
        )
    return keys[0]


def check_result(
    m: MultiResult, possible: tuple[str, ...], live: tuple[str, ...], after_reset: bool
) -> tuple[str, ...]:
    """§18's checks of a received MULTI_RESULT (each fault ``BAD_FIELD``); returns the live agents
    after the command. ``live``: the live agents before it (ignored after a RESET)."""
    what = "RESET" if after_reset else "MULTI_STEP"
    known = set(possible)
    agents = m.agents
    if any(type(a) is not str for a in agents):
        raise _bad(f"MULTI_RESULT.agents must be an array of agent ids (str), got {clip(agents, 80)}")
    if len(set(agents)) != len(agents):
        raise _bad(f"MULTI_RESULT.agents lists an agent twice: {clip(agents, 80)}")
    for a in agents:
        if a not in known:
            raise _bad(f"MULTI_RESULT.agents names {a!r}, which is not a possible agent")
    keys = set(m.obs)
    for a in m.obs:
        if a not in known:
            raise _bad(f"MULTI_RESULT.obs has an entry for {a!r}, which is not a possible agent")
    if set(m.infos) != keys:
        raise _bad(f"MULTI_RESULT.infos must have the keys of obs ({_keys(keys)}), got {_keys(m.infos)}")
    for a, info in m.infos.items():
        if type(info) is not dict:
            raise _bad(f"MULTI_RESULT.infos[{a!r}] must be a map, got {type(info).__name__}")
    if after_reset:
        if keys != set(agents):
            raise _bad(
                f"after RESET, MULTI_RESULT.obs must have one entry per live agent ({_keys(agents)}), "
                f"got {_keys(keys)}"
            )
        for name in ("rewards", "terminations", "truncations"):
            if getattr(m, name):
                raise _bad(f"after RESET, MULTI_RESULT.{name} must be an empty map")
        return tuple(agents)
    for name, ok, want in (
        ("rewards", lambda v: type(v) is float or type(v) is int, "a float"),
        ("terminations", lambda v: type(v) is bool, "a bool"),
        ("truncations", lambda v: type(v) is bool, "a bool"),
    ):
        field = getattr(m, name)
        if set(field) != keys:
            raise _bad(f"MULTI_RESULT.{name} must have the keys of obs ({_keys(keys)}), got {_keys(field)}")
        for a, v in field.items():
            if not ok(v):
                raise _bad(f"MULTI_RESULT.{name}[{a!r}] must be {want}, got {clip(v, 40)}")
    missing = [a for a in live if a not in keys]
    if missing:
        raise _bad(
            f"MULTI_RESULT after {what} has no entry for {_keys(missing)}: every agent that was live "
            "before the step gets its observation, reward and flags"
        )
    for a in agents:
        if a not in keys:
            raise _bad(f"MULTI_RESULT.agents names {a!r}, which has no entry in obs")
        if m.terminations[a] or m.truncations[a]:
            raise _bad(f"MULTI_RESULT.agents names {a!r}, but its episode ended (terminated or truncated)")
    return tuple(agents)  # (an int reward became a float in MultiResult.from_body, §5)


def agent_mismatch(actions: Any, live: Sequence[str], possible: Sequence[str]) -> str | None:
    """§18 AGENT_MISMATCH: why ``actions``' agents are not exactly ``live``, or None."""
    live_set = set(live)
    for agent in actions:
        if agent not in live_set:
            why = (
                "is not a possible agent"
                if agent not in possible
                else "is not live (it left the episode, or has not joined)"
            )
            return f"an action for {clip(agent, 60)}, which {why}; the live agents are {list(live)}"
    missing = [a for a in live if a not in actions]
    if missing:
        return f"no action for the live agent(s) {missing}; every live agent acts in each step"
    return None


def _keys(keys: Any) -> str:
    return clip(sorted(keys), 120)


__all__ = ["CAPABILITY", "agent_mismatch", "check_result", "peer_announced", "possible_agents"]
