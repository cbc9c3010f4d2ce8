"""The sans-I/O protocol core (spec/protocol.md): bytes in, messages out; messages in, bytes out.

Nothing in this package opens a socket, starts a thread or imports Gymnasium. Modules:
``wire`` (numbers), ``codec`` (values and tensors), ``messages`` (message types and their
fields), ``framing`` (the 12-byte header), ``connection`` (the state machine).
"""
