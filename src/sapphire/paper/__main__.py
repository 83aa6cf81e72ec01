"""`python -m sapphire.paper RUN_DIR`: run the paper venue server of a run directory."""

import sys

from sapphire.paper.server import serve

if len(sys.argv) != 2:
    raise SystemExit("usage: python -m sapphire.paper RUN_DIR")
serve(sys.argv[1])
