"""``python -m tenpo``: the same as the ``tenpo`` console script.

Spawn it with ``python -P -m tenpo`` (tenpo.sandbox.tenpo_command): from a source checkout, plain
``-m`` would import the checkout's partial ``tenpo/`` folder instead of the installed package.
"""

import sys

from tenpo.cli import main

if __name__ == "__main__":
    sys.exit(main())
