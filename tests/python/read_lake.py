"""Reads jhe's observation files the way notebooks do: pyarrow datasets and DuckDB, with hive partitioning.

Usage: read_lake.py <lake>/observations   → prints one JSON object with what both readers saw.
"""
import json
import sys

import duckdb
import pyarrow.dataset as ds

root = sys.argv[1]
dataset = ds.dataset(root, format="parquet", partitioning="hive")
table = dataset.to_table()
codes = sorted(set(table.column("code").to_pylist()))
dates = sorted({str(d) for d in table.column("date").to_pylist()})
values = table.column("value").to_pylist()

con = duckdb.connect()
duck_rows, duck_codes = con.execute(
    f"SELECT count(*), list(DISTINCT code) FROM read_parquet('{root}/*/*/*.parquet', hive_partitioning = true)"
).fetchone()

print(json.dumps({
    "pyarrow_rows": table.num_rows,
    "duckdb_rows": duck_rows,
    "duckdb_codes": sorted(duck_codes),
    "codes": codes,
    "dates": dates,
    "mean_value": sum(values) / len(values) if values else None,
    "columns": table.column_names,
}))
