"""The command line on top of everything: one command per MLproject entry point.

app.py: the typer app and main(); build.py: typer commands generated from options classes;
settings.py: the smaller commands' options and which class each command has; commands.py,
tune.py, dashboard.py: what the commands do; mlproject.py: MLproject generated from the options.
"""
