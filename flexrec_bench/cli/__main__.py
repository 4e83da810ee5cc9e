"""`python -m flexrec_bench.cli`: the command, from a source checkout too."""

from . import main

main()
