"""Env side in Python (design: layer 4): serve a Gymnasium env to an rlay agent side.

Two styles over one state machine, each usable with both connection directions:

- *callback style* — :func:`serve` listens and runs each connection against its own env (for a
  ``ClientEnv``); :func:`connect` dials a ``ServerEnv`` and serves one session.
- *loop style* — :class:`EnvSession`: the program's own main loop asks :meth:`EnvSession.poll`
  for the next command when it is ready, and answers it (what a game engine needs).
"""

from rlay.backends.server import Server, answer_commands, connect, lookup_call, run_session, serve
from rlay.backends.session import Command, EnvSession

__all__ = [
    "Command",
    "EnvSession",
    "Server",
    "answer_commands",
    "connect",
    "lookup_call",
    "run_session",
    "serve",
]
