"""The C# SDK against the shared SDK harness (tests/sdk/harness.py, sdk/README.md): its two entry
points sdk/csharp/bin/conformance and sdk/csharp/bin/cartpole (built with mcs, run with mono) as
real processes."""

from harness import SdkContract


class TestContract(SdkContract):
    LANG = "csharp"
    TOOLS = ("mcs", "mono", "make")
