"""Train, tune and compare PyTorch networks on FashionMNIST, tracked in MLflow, tuned by Optuna.

The layers, bottom up (each imports only those below it; pyproject.toml's import-linter
contracts check it):
    core/         config, recipes, data, models, training loop, statistics, figures (no MLflow,
                  no Optuna)
    tracking/     MLflow: the store, a tracked run's life, what a training run logs, the served
                  model's flavor
    serving/      evaluate and predict with a logged model
    tuning/       Optuna: search spaces and settings; workers/ (storages, recovery, helper
                  processes), registry/ (trial models, the champion), search/ (sampler, pruner,
                  budget, objective); the study loop and its summary
    replication/  the course study's tables over seeds and the report
    cli/          the command line behind every MLproject entry point
"""
