"""The course study replicated: its experiments as data, trainings over seeds, statistics,
the report (Markdown, HTML, figures)."""
