"""A study's models in MLflow: each trial's logged model, and the registered champion."""
