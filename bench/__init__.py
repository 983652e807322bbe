"""The speed benchmark (`python -m bench`, `make bench`): see bench/run.py."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: where `python -m pipeline` runs
