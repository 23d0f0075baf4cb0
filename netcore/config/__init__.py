"""A node's settings: the ``Config`` dataclass (the TOML config file that feeds it is read by
the command line, netcore.cli.config_file)."""
