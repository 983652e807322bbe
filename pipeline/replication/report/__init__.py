"""The replication report from finished runs, one job per module.

inputs (the runs and their JSON, the numbers read from them) -> verdicts (the study's claims,
tested) -> text (Markdown) and figures (matplotlib) -> page (self-contained HTML) -> folder
(writes it all to `--out` without touching what the project did not write).

Pure up to `folder`: it takes the runs' histories and confusion matrices (and their MLflow run
ids, to trace every number) and returns text and figures, so it is tested on made-up runs.
"""
