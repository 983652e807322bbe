"""The command line on top of everything: one command per MLproject entry point.

app.py: the typer app and main(); build.py: typer commands generated from options classes;
command_settings.py: the smaller commands' options and which class each command has; commands.py,
tune.py, dashboard.py: what the commands do; mlproject.py: MLproject generated from the options.

Heavy libraries (torch, MLflow, Optuna, SQLAlchemy) are imported inside the command functions:
`--help` and argument errors answer in 0.16 s instead of 3.0 s (docs/development.md).
"""
