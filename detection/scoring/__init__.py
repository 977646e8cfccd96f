"""Query and policy: the features SQL (one Trino text, run on Athena or DuckDB), the typed config, the explainable policy and its verdicts."""
