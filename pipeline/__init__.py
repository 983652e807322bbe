"""Train, tune and compare PyTorch networks on FashionMNIST, tracked in MLflow, tuned by Optuna.

The layers, bottom up:
    core/         config, data, models, augmentation, training loop, figures (no MLflow, no Optuna)
    tracking/     MLflow: the store, a tracked run's life, what a training run logs
    tuning/       Optuna: search spaces, storages, recovery, objective, study, champion
    replication/  the course study's tables over seeds, statistics and the report
    serving/      evaluate and predict with a logged model
    cli/          the command line behind every MLproject entry point
"""
