"""``p2pai bench``: the node's figures beside their baselines (raw pyzmq, direct onnxruntime)."""
