"""How fast the catalog loads, and how fast the bulk offer CSV is filtered.

Run from the repository root: ``python benchmarks/catalog_load.py``. Prints a Markdown table
for the ``## Catalog`` section of benchmarks/README.md.

- loading the bundled snapshot (``read_catalog_csv``) and ``current_catalog()`` with no cache;
- loading a generated 50,000-row catalog from CSV and from the SQLite cache, and
  ``current_catalog()`` (what ``d2c recommend`` calls) with that cache; goal < 0.5 s each; the
  baselines are the csv module's bare parse and ``pandas.read_csv`` of the same file;
- filtering a generated bulk offer CSV in AWS's format (preamble, header, 78 columns, one row in
  eight on-demand Linux shared) with d2c's streaming reader, against ``pandas.read_csv`` of the
  same file plus the same filter, in MB/s.

Every figure is the median of 5 runs, the baseline measured in the same run.
"""

from __future__ import annotations

import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.catalog import Catalog, InstanceOffer  # noqa: E402
from planner.catalog.bulk import filtered_rows, offers_from_rows  # noqa: E402
from planner.catalog.cache import load_cache, save_cache  # noqa: E402
from planner.catalog.csvfile import read_catalog_csv, write_catalog_csv  # noqa: E402
from planner.catalog.store import SNAPSHOT_PATH, current_catalog, load_snapshot  # noqa: E402
from tests.fixtures.catalog_servers import offer_csv, offer_row  # noqa: E402

RUNS = 5


def median_time(work) -> tuple[float, float, float]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def generated_catalog(rows: int) -> Catalog:
    stamp = datetime(2026, 11, 20, tzinfo=timezone.utc)
    offers = []
    for n in range(rows):
        region = f"region-{n % 50}"
        vcpus = 2 ** (n % 8 + 1)
        offers.append(InstanceOffer(f"f{n // 400}.size{n % 400}", region, vcpus, vcpus * 4.0, "x86_64", 0.0425 * vcpus,
                                    0.015 * vcpus, 0.017 * vcpus, network="Up to 12.5 Gigabit", physical_cores=vcpus // 2,
                                    source="import", fetched_at=stamp))
    return Catalog(tuple(offers), "import", stamp)


def bulk_file(path: Path, target_mb: float) -> int:
    variants = [dict(), dict(os="Windows"), dict(tenancy="Dedicated"), dict(software="SQL Web"), dict(os="RHEL"),
                dict(capacity="UnusedCapacityReservation"), dict(term="Reserved"), dict(os="SUSE")]
    rows = []
    n = 0
    while True:
        for variant in variants:
            rows.append(offer_row(f"fam{n // 50}.size{n % 50}", 0.01 * (n % 97 + 1), "us-east-1", vcpus=2 + n % 64,
                                  memory_gib=4 + n % 256, sku=f"SKU{n:012d}{len(rows)}", **variant))
        n += 1
        if n % 500 == 0 and len(offer_csv(rows[:800])) * len(rows) / 800 >= target_mb * 1e6:
            break
    body = offer_csv(rows)
    path.write_bytes(body)
    return len(body)


def filter_with_d2c(path: Path) -> int:
    with open(path, encoding="utf-8", newline="") as stream:
        parsed = filtered_rows(stream)
        return len(offers_from_rows(parsed.rows, "us-east-1", datetime.now(timezone.utc)))


def filter_with_pandas(path: Path) -> int:
    import pandas

    frame = pandas.read_csv(path, skiprows=5, dtype=str, keep_default_na=False)
    wanted = frame[(frame["TermType"] == "OnDemand") & (frame["Operating System"] == "Linux") & (frame["Tenancy"] == "Shared")
                   & (frame["Pre Installed S/W"] == "NA") & (frame["CapacityStatus"] == "Used")]
    return len(wanted.drop_duplicates("Instance Type"))


def main() -> None:
    print(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d}; median of {RUNS} runs.\n")
    print("| what | rows | median s | min s | max s |")
    print("| --- | --- | --- | --- | --- |")
    snapshot_rows = len(load_snapshot().offers)
    for label, work in (
        ("read_catalog_csv(snapshot)", lambda: read_catalog_csv(SNAPSHOT_PATH)),
        ("current_catalog() (no cache: snapshot, cached per process)", current_catalog),
    ):
        med, low, high = median_time(work)
        print(f"| {label} | {snapshot_rows} | {med:.4f} | {low:.4f} | {high:.4f} |")
    with tempfile.TemporaryDirectory() as tmp:
        big = generated_catalog(50_000)
        csv_path = Path(tmp) / "big.csv"
        write_catalog_csv(big, csv_path)
        db_path = Path(tmp) / "big.sqlite"
        save_cache(big, db_path)
        import pandas

        def current_with_cache():
            os.environ["D2C_CACHE_DIR"] = tmp
            save_cache(big)
            return median_time(current_catalog)

        for label, work in (
            ("csv.reader of the 50,000-row CSV (baseline: parsing only)", lambda: list(csv.reader(open(csv_path, newline="")))),
            ("pandas.read_csv of the 50,000-row CSV (baseline)", lambda: pandas.read_csv(csv_path)),
            ("read_catalog_csv(50,000-row CSV)", lambda: read_catalog_csv(csv_path)),
            ("load_cache(50,000-row SQLite cache)", lambda: load_cache(db_path)),
            ("current_catalog() with a 50,000-row cache", None),
        ):
            if work is None:
                med, low, high = current_with_cache()
                print(f"| {label} | 50000 | {med:.4f} | {low:.4f} | {high:.4f} |")
                continue
            med, low, high = median_time(work)
            print(f"| {label} | 50000 | {med:.4f} | {low:.4f} | {high:.4f} |")

        bulk_path = Path(tmp) / "index.csv"
        size = bulk_file(bulk_path, 40)
        print(f"\nBulk offer CSV: {size / 1e6:.1f} MB, one row in eight wanted.\n")
        print("| filter | offers kept | median s | MB/s |")
        print("| --- | --- | --- | --- |")
        kept_d2c = filter_with_d2c(bulk_path)
        kept_pandas = filter_with_pandas(bulk_path)
        assert kept_d2c == kept_pandas, (kept_d2c, kept_pandas)
        for label, work, kept in (("d2c streaming csv reader", lambda: filter_with_d2c(bulk_path), kept_d2c),
                                  ("pandas.read_csv + mask (baseline)", lambda: filter_with_pandas(bulk_path), kept_pandas)):
            med, _low, _high = median_time(work)
            print(f"| {label} | {kept} | {med:.3f} | {size / 1e6 / med:.1f} |")


if __name__ == "__main__":
    main()
