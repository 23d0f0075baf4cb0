"""The wire (PROTOCOL.md): msgpack messages and their validation, tensors, digests, addresses.

The bottom layer: it imports nothing else of netcore."""
