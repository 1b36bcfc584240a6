#!/usr/bin/env bash
# Reads `commlog export --format parquet` back with DuckDB (from pip, in a throwaway venv): the
# 20,000-message demo gives 46,250 event rows (the workload's 46,249 calls and the demo's budget), 20,000 of them sent, sum(cost_micros) 357,713,000,
# every row in the date=YYYY-MM-DD partition of its UTC day, `time` a UTC timestamp.
#
# Usage: .ci/check_parquet.sh [path/to/commlog]     (default: target/release/commlog)
# Exit: 0 when DuckDB agrees, or (with a notice) when pip cannot install duckdb; non-zero else.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/release/commlog}
if [ ! -x "$bin" ]; then
  echo "check_parquet: no commlog binary at $bin (run cargo build --release first)" >&2
  exit 1
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" --dir "$tmp/store" demo --messages 20000 -q >/dev/null
out="$tmp/events"
"$bin" --dir "$tmp/store" -q export --format parquet --out "$out"

skip() {
  echo "notice: check_parquet: $1; skipping the DuckDB check of the Parquet export" >&2
  exit 0
}
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
python3 -m venv "$tmp/venv" >/dev/null 2>&1 || skip "python3 cannot create a venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check duckdb >/dev/null 2>&1 ||
  skip "pip cannot install duckdb"

"$tmp/venv/bin/python" - "$out" <<'PY'
import sys

import duckdb

def one(query):
    """The first row of a query (fetchall works on every duckdb version)."""
    return duckdb.sql(query).fetchall()[0]


out = sys.argv[1]
source = f"read_parquet('{out}/*/*.parquet', hive_partitioning=true)"
rows, sent, cost = one(
    f"SELECT count(*), count(*) FILTER (WHERE kind='sent'), sum(cost_micros) FROM {source}"
)
# Each row sits in the partition of its event's UTC day (computed without a time zone).
(misplaced,) = one(
    f"SELECT count(*) FROM {source} "
    "WHERE epoch_us(time) // 86400000000 <> date - DATE '1970-01-01'"
)
(time_type,) = one(f"SELECT typeof(time) FROM {source} LIMIT 1")

print(f"duckdb {duckdb.__version__}: {rows} rows, {sent} sent, sum(cost_micros) = {cost}, "
      f"{misplaced} rows outside their day's partition, time is {time_type}")
expected = (46250, 20000, 357713000, 0, "TIMESTAMP WITH TIME ZONE")
if (rows, sent, cost, misplaced, time_type) != expected:
    print(f"check_parquet: expected {expected}", file=sys.stderr)
    sys.exit(1)
print("check_parquet: DuckDB reads the Parquet export as expected")
PY
