"""Test kits for people who build on rlay: an SDK author's conformance driver (spec §12) and the
checks every transport must pass. Nothing here is needed at run time.

- :class:`TrivialEnv` (:mod:`rlay.testing.envs`) — the benchmark env, as little as an env can do.
- :mod:`rlay.testing.transports` — the battery every transport passes.
- :mod:`rlay.testing.conformance` — the golden vectors as runner lines, and the driver that speaks
  them to any SDK's runner program: ``python -m rlay.testing.conformance CMD [ARGS...]``.
"""

from rlay.testing.conformance import conformance_lines, load_vectors, run_conformance
from rlay.testing.envs import TrivialEnv
from rlay.testing.transports import check_transport

__all__ = ["TrivialEnv", "check_transport", "conformance_lines", "load_vectors", "run_conformance"]
