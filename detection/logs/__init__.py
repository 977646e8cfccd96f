"""Log input: the real-time log schema, the reader into DuckDB with bad input counted per kind, the TSV to Parquet converter, and the Firehose transformation."""
