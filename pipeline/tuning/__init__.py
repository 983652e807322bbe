"""Optuna around the core: search spaces, storages and dead-worker recovery, the objective,
the study loop, the champion, the study's figures, helper worker processes."""
