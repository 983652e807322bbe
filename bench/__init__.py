"""The speed benchmark (`python -m bench`, `make bench`): see bench/run.py."""
