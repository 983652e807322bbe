"""`python -m pipeline ...`: the command line (pipeline/cli/app.py)."""

from pipeline.cli.app import main

main()
