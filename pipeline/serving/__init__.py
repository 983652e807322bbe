"""Logged models put to use: `evaluate` on the test set, `predict` on image files."""
