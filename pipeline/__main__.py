"""`python -m pipeline ...`: the command line (see pipeline/cli.py)."""

from pipeline.cli.app import main

main()
