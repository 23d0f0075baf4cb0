"""A node's settings: the ``Config`` dataclass and the TOML config file that feeds it."""
