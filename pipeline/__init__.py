"""Train, tune and compare PyTorch networks on FashionMNIST, tracked in MLflow, tuned by Optuna.

The core (config, data, models, training, plots) knows nothing of MLflow or Optuna; `tracking`
wraps it with MLflow, and `cli` is the command line behind every MLproject entry point.
"""
