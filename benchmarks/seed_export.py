"""The seed's export path (the baseline for ``export``): ``json.load`` every file, one
``pandas.DataFrame`` per record type, ``to_parquet``, then delete the files.

usage: python benchmarks/seed_export.py CACHE_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys

import pandas as pd


def main(cache: str, out: str) -> None:
    for service in ("study_user_activity", "in_network_user_activity"):
        for operation in ("create", "delete"):
            base = os.path.join(cache, service, operation)
            if not os.path.isdir(base):
                continue
            for record_type in sorted(os.listdir(base)):
                rows, paths = [], []
                for directory, _, files in os.walk(os.path.join(base, record_type)):
                    for name in files:
                        if name.endswith(".json") and not name.startswith("."):
                            path = os.path.join(directory, name)
                            with open(path) as handle:
                                row = json.load(handle)
                            row["record"] = json.dumps(row.get("record"))
                            rows.append(row)
                            paths.append(path)
                if not rows:
                    continue
                target = os.path.join(out, service, record_type, operation)
                os.makedirs(target, exist_ok=True)
                pd.DataFrame(rows).to_parquet(os.path.join(target, "part.parquet"))
                for path in paths:
                    os.remove(path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
