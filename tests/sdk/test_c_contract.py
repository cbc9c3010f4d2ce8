"""The C SDK against the shared SDK harness (tests/sdk/harness.py, sdk/README.md): its two
entry points sdk/c/bin/conformance and sdk/c/bin/cartpole as real processes."""

from harness import SdkContract


class TestContract(SdkContract):
    LANG = "c"
    TOOLS = ("gcc", "make")
