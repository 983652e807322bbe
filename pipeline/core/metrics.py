"""Metric names, defined once: training, MLflow, Optuna, plots and reports all use these.

Standard library only, so modules that must stay light (`tune --help`, the search-space
grammar) name metrics without importing torch.
"""

TRAIN_LOSS, TRAIN_ACC = "train_loss", "train_acc"
VAL_LOSS, VAL_ACC = "val_loss", "val_acc"
TEST_LOSS, TEST_ACC = "test_loss", "test_acc"
EPOCH_TIME = "epoch_time_s"
TRAIN_TIME = "train_time_s"
EPOCH_METRICS = (TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, TEST_LOSS, TEST_ACC, EPOCH_TIME)
