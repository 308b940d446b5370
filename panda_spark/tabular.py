"""Query results as text: an aligned table, CSV with a header, or a JSON array of objects."""
from __future__ import annotations

import csv
import json


def write_rows(columns: list[str], rows: list[dict], fmt: str, out) -> None:
    """Print query results as an aligned table, CSV with a header, or a JSON array of objects."""
    if fmt == "json":
        json.dump(rows, out, default=str, ensure_ascii=False)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(r[c]) for c in columns] for r in rows])
    else:
        cells = [[_cell(r[c]) for c in columns] for r in rows]
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
        line = lambda values: " | ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
        out.write(line(columns) + "\n" + "-+-".join("-" * w for w in widths) + "\n")
        out.writelines(line(row) + "\n" for row in cells)
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)
