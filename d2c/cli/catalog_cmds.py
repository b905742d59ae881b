"""``d2c catalog``: refresh, show, import and export the EC2 instance catalog.

``show --json`` prints (version 1)::

    {"version": 1, "source": "cache", "origin": "bulk offer files", "fetched_at": ISO-8601,
     "spot_fetched_at": ISO-8601 | null, "age": "on-demand prices from …",
     "vcpu_quotas": {"us-east-1": {"on-demand": 64.0, "spot": 64.0}},
     "offers": [{"instance_type": "c6i.xlarge", "region": "us-east-1", "vcpus": 4, "memory_gib": 8.0,
                 "arch": "x86_64", "on_demand_usd_h": 0.17, "spot_usd_h": null, "spot_median_usd_h": null,
                 "gpus": 0, "network": "Up to 12.5 Gigabit", "current_generation": true,
                 "physical_cores": 2, "interruption_bucket": null, "source": "snapshot",
                 "fetched_at": ISO-8601, "spot_zones": {"use1-az1": 0.031, …}}, …]}

``spot_zones`` is the latest spot price per zone (AZ ID, or zone name where the source gave only
that); empty when only the region's summary is known.

offers are sorted by region, family, vCPUs, memory and name.
"""

from __future__ import annotations

from pathlib import Path

import click

from d2c.cli.aws_options import aws_profile_option

from d2c.cli.output import console, note, print_json, progress
from d2c.errors import UsageError, WorkError


@click.group("catalog")
def catalog() -> None:
    """The EC2 instance catalog: types, specs and prices per region, and how old they are."""


def _split(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@catalog.command("refresh")
@aws_profile_option
@click.option("--regions", "regions", multiple=True, metavar="R[,R…]", help="Regions to read (default: those already in the catalog).")
@click.option("--source", type=click.Choice(["api", "bulk"]), default=None, help="api: AWS APIs with your credentials; bulk: public offer files, no credentials. Default: api when credentials are found.")
@click.option("--family", "families", multiple=True, metavar="F[,F…]", help="Keep only these families, e.g. c6i,m7g.")
def refresh_cmd(regions: tuple[str, ...], source: str | None, families: tuple[str, ...]) -> None:
    """Read current prices and specs into the local cache, with a progress bar.

    Without network or credentials the cached catalog (or the bundled snapshot) stays in use:
    this names it and exits 1, so that ``refresh && recommend`` does not plan on old prices.
    """
    from planner.catalog.store import describe_age, refresh

    with progress() as bar:
        tasks: dict[str, int] = {}

        def on_progress(region: str, done, total=None) -> None:
            if region not in tasks:
                tasks[region] = bar.add_task(f"catalog {region}", total=None, status="")
            if isinstance(done, str):
                bar.update(tasks[region], status=done)
            else:
                bar.update(tasks[region], completed=done, total=total, status=f"{done / 1e6:.1f} MB")

        outcome = refresh(regions=_split(regions) or None, source=source, families=_split(families) or None, on_progress=on_progress)
    if not outcome.refreshed:
        if outcome.bad_input:
            note(f"catalog not refreshed; using the catalog already here: {describe_age(outcome.catalog)}")
            raise UsageError(outcome.problem)
        note(f"falling back to the catalog already here: {describe_age(outcome.catalog)}")
        raise WorkError(f"catalog not refreshed: {outcome.problem}")
    regions = outcome.catalog.regions()
    note(f"catalog refreshed: {len(outcome.catalog.offers)} offers in {len(regions)} region{'' if len(regions) == 1 else 's'}")
    note(describe_age(outcome.catalog))


@catalog.command("show")
@click.option("--region", "regions", multiple=True, metavar="R", help="Only this region (repeatable).")
@click.option("--family", "families", multiple=True, metavar="F", help="Only this family, e.g. c6i (repeatable).")
@click.option("--min-vcpus", type=click.IntRange(min=0), default=0, help="At least this many vCPUs.")
@click.option("--min-memory", type=click.FloatRange(min=0), default=0.0, metavar="GIB", help="At least this much memory, GiB.")
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON (documented in this module) instead of a table.")
def show_cmd(regions: tuple[str, ...], families: tuple[str, ...], min_vcpus: int, min_memory: float, as_json: bool) -> None:
    """List instance types with specs and prices."""
    from planner.catalog.store import current_catalog, describe_age

    chosen = _split(regions)
    catalog = current_catalog(regions=chosen or None)
    age = describe_age(catalog)
    note(age)
    selected = catalog.select(families=_split(families) or None, min_vcpus=min_vcpus, min_memory_gib=min_memory)
    if as_json:
        print_json(_as_json(selected, age))
        return
    if not selected.offers:
        note("no instance type matches these filters")
        return
    console().print(_table(selected, console().width))


def _as_json(catalog, age: str) -> dict:
    from dataclasses import asdict

    def stamp(value):
        return value.isoformat() if value is not None else None

    offers = []
    for offer in catalog.offers:
        row = asdict(offer)
        row["fetched_at"] = stamp(offer.fetched_at)
        row["spot_zones"] = dict(offer.spot_zones)
        offers.append(row)
    return {
        "version": 1,
        "source": catalog.source,
        "origin": catalog.origin or catalog.source,
        "fetched_at": stamp(catalog.fetched_at),
        "spot_fetched_at": stamp(catalog.spot_fetched_at),
        "age": age,
        "vcpu_quotas": catalog.vcpu_quotas,
        "offers": offers,
    }


def _price(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _table(catalog, width: int):
    from rich import box
    from rich.table import Table

    regions = catalog.regions()
    where = f"in {regions[0]}" if len(regions) == 1 else f"in {len(regions)} regions"
    table = Table(title=f"{len(catalog.offers)} instance types {where}, prices in USD per hour", title_justify="left",
                  box=box.SIMPLE_HEAD)
    columns: list[tuple[str, str, object]] = [
        ("region", "left", lambda o: o.region),
        ("type", "left", lambda o: o.instance_type),
        ("vCPUs", "right", lambda o: str(o.vcpus)),
        ("GiB", "right", lambda o: f"{o.memory_gib:g}"),
        ("arch", "left", lambda o: o.arch),
        ("on-demand", "right", lambda o: _price(o.on_demand_usd_h)),
        ("spot min", "right", lambda o: _price(o.spot_usd_h)),
        ("spot med", "right", lambda o: _price(o.spot_median_usd_h)),
        ("network", "left", lambda o: o.network),
    ]
    # Names and prices must stay whole, so the least needed columns go on narrow terminals
    # (--json always has every field).
    if len(regions) == 1:
        columns.pop(0)
    if width < 120:
        columns.pop()
    if width < 90 and len(regions) > 1:
        columns.pop()
    for name, justify, _value in columns:
        table.add_column(name, justify=justify, no_wrap=True)
    for o in catalog.offers:
        table.add_row(*(value(o) for _name, _justify, value in columns))
    return table


@catalog.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
def import_cmd(csv_file: Path) -> None:
    """Load a catalog CSV (d2c's columns or a SkyPilot AWS vms.csv) into the local cache.

    Regions in the file replace those regions in the cache; other cached regions stay.
    """
    from planner.catalog.store import describe_age, import_catalog

    catalog = import_catalog(csv_file)
    note(f"imported {csv_file}: the catalog now has {len(catalog.offers)} offers in {len(catalog.regions())} regions")
    note(describe_age(catalog))


@catalog.command("export")
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--region", "regions", multiple=True, metavar="R", help="Only this region (repeatable).")
def export_cmd(csv_file: Path, regions: tuple[str, ...]) -> None:
    """Write the catalog in use to a CSV file in d2c's columns (re-importable)."""
    from planner.catalog.csvfile import write_catalog_csv
    from planner.catalog.store import current_catalog, describe_age

    catalog = current_catalog(regions=_split(regions) or None)
    note(describe_age(catalog))
    write_catalog_csv(catalog, csv_file)
    note(f"wrote {len(catalog.offers)} offers to {csv_file}")


COMMANDS: list[click.Command] = [catalog]
