"""`python -m flexrec_bench.cli`: the command, from a source checkout too."""

from flexrec_bench.cli import main

main()
