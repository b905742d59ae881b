"""``d2c recommend``: ranked plans under a budget and deadline.

``--json`` output (stable): the plans.json document (``planner.plans``, version 1), i.e.
``{"version": 1, "created_at", "descriptor", "inputs": {...}, "plans": [{"rank", "region", "why",
"on_frontier", "time_s": {"p50", "p90"}, "cost_usd": {"p50", "p90"}, "zone", "cost_breakdown": {"compute",
"ebs", "public_ipv4", "egress", "snapshots", "cpu_credits"}, "roles": [...]}]}``.
Burstable types (t2, t3, t3a, t4g) are planned only with ``--include-burstable``; naming one in
``--types`` without it is exit 2.
Exit 3 with ``error: <which limit binds and by how much>`` when no plan fits.

Without a d2c.yaml (``--profile-file`` alone, e.g. a profile imported from a runs CSV) it plans one
role of 1..64 instances, every host running workers and one of them the master, and says so.
The table shows one line per role allocation and never cuts a name; plan 1's cost breakdown
follows it.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import click
from d2c.cli.profile_file_option import profile_file_option

from d2c.durations import format_duration, parse_duration
from d2c.errors import UsageError

def _names(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


@click.command("recommend")
@click.option("--budget", type=float, required=True, help="USD for the whole run, overheads included (p90 cost must fit)")
@click.option("--deadline", default=None, help="the run must finish within this (p90), e.g. 3h, 90m, 1h30m")
@click.option("--regions", multiple=True, help="regions to consider, comma-separated (default: all in the catalog)")
@click.option("--market", type=click.Choice(["on-demand", "spot", "any"]), default="any", show_default=True)
@click.option("--types", "--families", "include", multiple=True, help="only these families or types, e.g. c6i,c7g.xlarge")
@click.option("--exclude", multiple=True, help="never these families or types")
@click.option("--include-burstable", is_flag=True, help="plan burstable types too (t2, t3, t3a, t4g; CPU credits priced)")
@click.option("--max-instances", type=click.IntRange(min=1), default=None, help="at most this many instances in a plan")
@click.option("--max-types", type=click.IntRange(min=1, max=10), default=None, help="at most this many worker types in a plan [default: 2]")
@click.option("--homogeneous", is_flag=True, help="one instance type per role (--max-types 1)")
@click.option("--balance", type=click.Choice(["static", "dynamic"]), default=None, help="how the app shares work (default: d2c.yaml's balance, else static)")
@click.option("--arch", type=click.Choice(["x86_64", "arm64", "any"]), default=None, help="image architecture (default: x86_64 for VM images, any for folder apps)")
@click.option("--top", type=click.IntRange(min=1, max=50), default=5, show_default=True, help="how many distinct worker mixes to rank")
@click.option("--scale", type=float, default=None, help="problem scale (default: the profile's full_scale)")
@click.option("--output-gb", type=float, default=1.0, show_default=True, help="size of the outputs brought back (egress)")
@click.option("--solver", type=click.Choice(["highs", "cbc"]), default="highs", show_default=True)
@profile_file_option(Path("profile.json"), help="the profile to plan from")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="plan from this catalog CSV instead of the cached one")
@click.option("-f", "--file", "descriptor_path", type=click.Path(path_type=Path), default=None, help="the descriptor (default ./d2c.yaml; without one, plan from the profile alone)")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write the plans here (plans.json, read by 'd2c run --plan N')")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write cost against time as a PNG")
@click.option("--json", "as_json", is_flag=True, help="print the plans as JSON (the plans.json document)")
def recommend(budget, deadline, regions, market, include, exclude, include_burstable, max_instances, max_types, homogeneous, balance, arch, top,
              scale, output_gb, solver, profile_path, catalog_path, descriptor_path, output, plot, as_json) -> None:
    """Rank EC2 plans (instance mix, count, region, market) by cost under a budget and deadline."""
    from d2c.cli.output import note
    from d2c.descriptor import BALANCE_MEANING, DEFAULT_BALANCE, load_descriptor
    from planner import recommend as planning
    from planner.candidates import ASSUMED_SPEED, Limits, check_burstable_named, speedless_families
    from profiler.profile_file import load_profile

    if not (math.isfinite(budget) and budget > 0):
        raise UsageError(f"--budget: {budget:g} must be a positive, finite amount of USD")
    if not (math.isfinite(output_gb) and output_gb >= 0):
        raise UsageError(f"--output-gb: {output_gb:g} must be a finite size of zero or more GB")
    deadline_s = parse_duration(deadline, "--deadline") if deadline else None
    descriptor = None
    if descriptor_path is not None or Path("d2c.yaml").exists():
        descriptor = load_descriptor(descriptor_path or Path("d2c.yaml"))
    profile = load_profile(profile_path)
    if scale is not None and not scale > 0:
        raise UsageError(f"--scale: {scale:g} must be positive")
    scale = profile.full_scale if scale is None else scale
    balance = balance or (descriptor.balance if descriptor is not None else DEFAULT_BALANCE)
    region_list = _names(regions)
    if catalog_path is not None:
        from planner.catalog.csvfile import read_catalog_csv

        catalog = read_catalog_csv(catalog_path)
    else:
        from planner.catalog.store import current_catalog

        catalog = current_catalog(regions=list(region_list) or None)
    from planner.catalog.store import describe_age

    note(describe_age(catalog))
    if descriptor is None:
        groups, services = planning.profile_only_groups(), ()
        note(
            f"no d2c.yaml here: planning one role '{planning.PROFILE_ONLY_ROLE}' of 1..{planning.PROFILE_ONLY_MAX} instances "
            f"(auto count) from {profile_path} alone; write a d2c.yaml (d2c init) to plan your own roles"
        )
    else:
        sizes = _virtual_sizes(descriptor)
        groups = planning.role_groups(descriptor, sizes)
        services = planning.service_groups(descriptor, sizes)
        for group in services:
            note(f"service role '{group.role}': {group.min_count} host(s) of the cheapest type holding {group.memory_mb:.0f} MB, no ranks")
    note(f"balance {BALANCE_MEANING[balance]}")
    default_arch = "x86_64" if descriptor is None else planning.default_arch(descriptor)
    limits = Limits(
        budget_usd=budget,
        deadline_s=deadline_s,
        regions=region_list,
        market=market,
        include=_names(include),
        exclude=_names(exclude),
        max_instances=max_instances,
        homogeneous=homogeneous,
        max_types=max_types,
        balance=balance,
        arch=None if arch == "any" else (arch or default_arch),
        include_burstable=include_burstable,
    )
    check_burstable_named(limits)
    left_out, assumed = speedless_families(catalog, limits)
    if left_out:
        note(f"left out of plans: {', '.join(left_out)} (no speed basis: not in the family table and no processor facts); "
             f"name one in --families to plan it at an assumed {ASSUMED_SPEED:g} x c5 core")
    if assumed:
        note(f"{', '.join(assumed)}: no speed basis; planned at an assumed {ASSUMED_SPEED:g} x c5 core because --families names it")
    if region_list:
        known = {offer.region for offer in catalog.offers}
        unknown = [r for r in region_list if r not in known]
        if unknown:
            raise UsageError(f"--regions: {', '.join(unknown)} not in the catalog; it covers {', '.join(sorted(known))}")
    subs = planning.build_problem(
        profile.predictor, catalog, groups, limits,
        scale=scale, rules=planning.billing_rules(descriptor, output_gb), host_speed=profile.host.speed, services=services,
    )
    result = planning.recommend(subs, limits, top=top, solver=solver, points=plot is not None)
    name = descriptor.name if descriptor is not None else profile_path.stem
    plans = planning.plan_set(result, limits, descriptor_name=name, scale=scale, profile_digest=profile.digest, catalog=catalog, output_gb=output_gb)
    if output is not None:
        plans.save(output)
    if plot is not None:
        from planner.frontier_plot import write_frontier_plot

        write_frontier_plot(plot, plans, result.points)
    if as_json:
        from d2c.cli.output import print_json

        print_json(plans.to_dict())
    else:
        _print_table(plans, budget)
    if output is not None:
        plans_option = "" if output == Path("plans.json") else f" --plans {shlex.quote(str(output))}"
        note(f"wrote {output}; run 'd2c run --plan 1{plans_option}' to carry out plan #1")
    if plot is not None:
        note(f"wrote {plot}")


def _virtual_sizes(descriptor) -> dict[str, int]:
    """Each VM role's virtual disk size, the size EC2 creates its root volume at."""
    from executor.image.source import open_source

    return {role.name: open_source(role.image, vm=role.vm).virtual_size for role in descriptor.roles if not role.image_is_folder}


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _also(plan) -> str:
    """``also in us-east-2, us-west-2 (+$0.00)``: where else the same worker mix runs (a zone, for a
    spot plan priced per zone: ``use1-az1``)."""
    if not plan.also_in:
        return ""
    extra = [a.cost_usd.p50 - plan.cost_usd.p50 for a in plan.also_in]
    spread = f"+{_money(min(extra))}" if max(extra) - min(extra) < 0.005 else f"+{_money(min(extra))} to +{_money(max(extra))}"
    return f"; also in {', '.join(a.zone or a.region for a in plan.also_in)}, {spread}"


def plan_rows(plan) -> list[tuple[str, ...]]:
    """The table's lines for one plan: one per role allocation, at least two (p50 over p90), and a
    third naming the zone of a spot plan priced per zone."""
    markets = sorted({a.market for a in plan.roles})
    allocations = [(a.role, f"{a.count}x {a.instance_type}") for a in plan.roles]
    where = [plan.region, ",".join(markets)] + ([plan.zone] if plan.zone else [])
    times = [f"p50 {format_duration(plan.time_s.p50)}", f"p90 {format_duration(plan.time_s.p90)}"]
    costs = [f"p50 {_money(plan.cost_usd.p50)}", f"p90 {_money(plan.cost_usd.p90)}"]
    lines = max(len(allocations), len(where))
    rows = []
    for n in range(lines):
        role, instances = allocations[n] if n < len(allocations) else ("", "")
        rows.append((
            f"{plan.rank}{'*' if plan.on_frontier else ''}" if n == 0 else "",
            role,
            instances,
            where[n] if n < len(where) else "",
            times[n] if n < 2 else "",
            costs[n] if n < 2 else "",
        ))
    return rows


BREAKDOWN_LABELS = {
    "compute": "compute", "ebs": "EBS root volumes", "public_ipv4": "public IPv4", "egress": "egress",
    "snapshots": "image snapshots", "cpu_credits": "CPU credits",
}
"""How the table names each item of a plan's cost breakdown (planner.billing.CostBreakdown)."""


def _print_table(plans, budget: float) -> None:
    from rich import box
    from rich.table import Table

    from d2c.cli.output import console

    # No borders, one space between columns: the longest names (12x c7i.metal-48xl, ap-southeast-4)
    # fit whole in 80 columns, and any cell that cannot fit folds onto the next line, never '…'.
    table = Table(title=f"plans within {_money(budget)}", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True,
                  pad_edge=False, show_edge=False)
    for column in ("#", "role", "instances", "region/market", "time", "cost"):
        table.add_column(column, justify="right" if column == "#" else "left", overflow="fold",
                         no_wrap=column in ("instances", "region/market"))
    for plan in plans.plans:
        for row in plan_rows(plan):
            table.add_row(*row)
        table.add_section()
    out = console()
    out.print(table, overflow="fold")
    for plan in plans.plans:
        out.print(f"#{plan.rank}: {plan.why}{_also(plan)}", overflow="fold")
    out.print("* on the cost/time frontier")
    first = plans.plans[0].breakdown if plans.plans else None
    if first is not None:
        items = ", ".join(f"{BREAKDOWN_LABELS[name]} ${usd:,.4f}" for name, usd in first.to_dict().items() if usd)
        out.print(f"plan #1 costs {_money(first.total)} at p50: {items}", overflow="fold")


COMMANDS: list[click.Command] = [recommend]
