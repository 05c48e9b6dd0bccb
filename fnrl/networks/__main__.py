"""``python -m fnrl.networks``: the registered networks (:mod:`fnrl.network_list`)."""

import sys

from fnrl.network_list import main

if __name__ == "__main__":
    sys.exit(main())
