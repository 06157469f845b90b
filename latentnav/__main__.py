"""``python -m latentnav SUBCOMMAND ...``: the same as the ``latentnav`` command."""

from latentnav.commands.cli import main

main()
