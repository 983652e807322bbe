"""MLflow around the core: where runs go, a tracked run's life, what a training run logs."""
