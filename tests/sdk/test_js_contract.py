"""The JavaScript SDK against the shared SDK harness (tests/sdk/harness.py, sdk/README.md): its two
entry points sdk/js/bin/conformance and sdk/js/bin/cartpole as real node processes."""

from harness import SdkContract


class TestContract(SdkContract):
    LANG = "js"
    TOOLS = ("node",)
