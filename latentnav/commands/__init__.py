"""The commands: what a user runs (``latentnav SUBCOMMAND``, ``train.py``); the top layer."""
