"""The reference programs the benchmark compares shandy against, one per subprocess.

    python benchmarks/baselines.py floor    leads.csv   # csv.reader + header mapping + orjson
    python benchmarks/baselines.py pandas   leads.csv   # read_csv -> to_dict -> json.dumps
    python benchmarks/baselines.py polars   leads.csv   # read_csv -> write_ndjson
    python benchmarks/baselines.py calamine leads.xlsx  # a bare read of the first sheet

Each writes its JSON to /dev/null and imports only what it uses, so its peak RSS
is its own.
"""

from __future__ import annotations

import os
import sys

# The header -> field label mapping every contender applies (the generator's
# headers already are the labels; the lookup is what a real script pays).
LABELS = {
    "first name": "First Name",
    "last name": "Last Name",
    "email": "Email",
    "company": "Company",
    "job title": "Job Title",
    "phone number": "Phone Number",
    "website": "Website",
    "city": "City",
    "country": "Country",
    "lead source": "Lead Source",
}


def _label(header: str) -> str:
    return LABELS.get(header.strip().lower(), header)


def floor(path: str) -> None:
    """The floor: csv.reader + the header mapping + orjson.dumps per row, nothing else."""
    import csv

    import orjson

    with (
        open(path, newline="", encoding="utf-8") as f,
        open(os.devnull, "wb", buffering=1 << 20) as out,
    ):
        reader = csv.reader(f)
        labels = [_label(h) for h in next(reader)]
        write, dumps = out.write, orjson.dumps
        for row in reader:
            write(dumps(dict(zip(labels, row, strict=False))))


def pandas(path: str) -> None:
    """The script most users would write."""
    import json

    import pandas as pd

    df = pd.read_csv(path)
    df = df.rename(columns=_label)
    with open(os.devnull, "w") as out:
        for record in df.to_dict("records"):
            out.write(json.dumps(record))


def polars(path: str) -> None:
    """Columnar reference: polars reads the file and writes JSON lines."""
    import polars as pl

    df = pl.read_csv(path, infer_schema=False)
    df = df.rename({c: _label(c) for c in df.columns})
    df.write_ndjson(os.devnull)


def calamine(path: str) -> None:
    """A bare python-calamine read of the first sheet into Python values."""
    import python_calamine

    book = python_calamine.CalamineWorkbook.from_path(path)
    rows = book.get_sheet_by_index(0).to_python()
    if not rows:
        raise SystemExit("empty sheet")


RUNNERS = {"floor": floor, "pandas": pandas, "polars": polars, "calamine": calamine}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in RUNNERS:
        print(f"usage: baselines.py {{{','.join(RUNNERS)}}} FILE", file=sys.stderr)
        return 2
    RUNNERS[argv[0]](argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
