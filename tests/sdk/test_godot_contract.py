"""The Godot addon against the shared SDK harness (tests/sdk/harness.py, sdk/README.md): its two
entry points sdk/godot/bin/conformance and sdk/godot/bin/cartpole, GDScript run by the real
headless engine (godot3-server). tcp only: Godot 3 has no unix sockets."""

from harness import SdkContract


class TestContract(SdkContract):
    LANG = "godot"
    TOOLS = ("godot3-server",)
    UNIX = False
    START_TIMEOUT = 60.0
