"""``python -m latentnav.generators ...``: the same as ``latentnav generator ...`` (see latentnav/generator_tools.py).

An entry point only (nothing imports it), so it may reach the commands layer."""

import sys

from latentnav.commands.generator_tools import main

sys.exit(main())
