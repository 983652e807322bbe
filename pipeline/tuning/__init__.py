"""Optuna around the core. Bottom up: space_params (one search-space parameter) and
space_file (reading a space strictly); attrs (what trials record), space (the search-space
grammar) and directions (what a study optimizes); tune_settings; workers/ (storage, recovery,
helper processes); registry/ (trial models, the champion); search/ (sampler and pruner, budget,
objective); then the frontier's front (pareto, pareto_figure), the study's figures, its summary
and the study loop itself."""
