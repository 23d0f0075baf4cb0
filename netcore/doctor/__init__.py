"""``p2pai doctor``: why a node sees no peers, each finding with its fix."""
