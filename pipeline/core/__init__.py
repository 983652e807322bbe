"""The torch core: typed config, data, models, augmentation, the training loop, figures.

Imports neither mlflow nor optuna (tests/test_layers.py checks): tracking and tuning wrap it
from outside through callbacks.
"""
