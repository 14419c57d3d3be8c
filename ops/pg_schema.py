"""Print a DSN for a fresh schema of the project's PostgreSQL (the demo's store with several workers).

    .venv/bin/python ops/pg_schema.py DSN SCHEMA    drop SCHEMA if it exists, create it, print its DSN
"""
from __future__ import annotations

import re
import sys
from urllib.parse import quote


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", argv[1]):
        print(__doc__, file=sys.stderr)
        return 2
    dsn, schema = argv
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute(f"drop schema if exists {schema} cascade")  # type: ignore[arg-type]  # checked name above
        pg.execute(f"create schema {schema}")  # type: ignore[arg-type]
    print(f"{dsn}{'&' if '?' in dsn else '?'}options={quote(f'-csearch_path={schema}')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
