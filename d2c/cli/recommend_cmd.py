"""``d2c recommend``: ranked plans under a budget and deadline.

``--json`` output (stable): the plans.json document (``planner.plans``, version 1), i.e.
``{"version": 1, "created_at", "descriptor", "inputs": {...}, "plans": [{"rank", "region", "why",
"on_frontier", "time_s": {"p50", "p90"}, "cost_usd": {"p50", "p90"}, "zone", "cost_breakdown": {"compute",
"ebs", "public_ipv4", "egress", "snapshots", "cpu_credits"}, "roles": [...]}]}``.
Burstable types (t2, t3, t3a, t4g) are planned only with ``--include-burstable``; naming one in
``--types`` without it is exit 2.
Exit 3 with ``error: <which limit binds and by how much>`` when no plan fits.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import click

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
@click.option("--homogeneous", is_flag=True, help="one instance type per role")
@click.option("--arch", type=click.Choice(["x86_64", "arm64", "any"]), default=None, help="image architecture (default: x86_64 for VM images, any for folder apps)")
@click.option("--top", type=click.IntRange(min=1, max=50), default=5, show_default=True, help="how many cheapest plans to rank")
@click.option("--scale", type=float, default=None, help="problem scale (default: the profile's full_scale)")
@click.option("--output-gb", type=float, default=1.0, show_default=True, help="size of the outputs brought back (egress)")
@click.option("--solver", type=click.Choice(["cbc", "highs"]), default="cbc", show_default=True)
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("profile.json"), show_default=True)
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="plan from this catalog CSV instead of the cached one")
@click.option("-f", "--file", "descriptor_path", type=click.Path(path_type=Path), default=None, help="the descriptor (default ./d2c.yaml)")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write the plans here (plans.json, read by 'd2c run --plan N')")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write cost against time as a PNG")
@click.option("--json", "as_json", is_flag=True, help="print the plans as JSON (the plans.json document)")
def recommend(budget, deadline, regions, market, include, exclude, include_burstable, max_instances, homogeneous, arch, top, scale, output_gb,
              solver, profile_path, catalog_path, descriptor_path, output, plot, as_json) -> None:
    """Rank EC2 plans (instance mix, count, region, market) by cost under a budget and deadline."""
    from d2c.cli.output import note
    from d2c.descriptor import load_descriptor
    from planner import recommend as planning
    from planner.candidates import Limits, check_burstable_named
    from profiler.profile_file import load_profile

    if not (math.isfinite(budget) and budget > 0):
        raise UsageError(f"--budget: {budget:g} must be a positive, finite amount of USD")
    if not (math.isfinite(output_gb) and output_gb >= 0):
        raise UsageError(f"--output-gb: {output_gb:g} must be a finite size of zero or more GB")
    deadline_s = parse_duration(deadline, "--deadline") if deadline else None
    descriptor = load_descriptor(descriptor_path or Path("d2c.yaml"))
    profile = load_profile(profile_path)
    if scale is not None and not scale > 0:
        raise UsageError(f"--scale: {scale:g} must be positive")
    scale = profile.full_scale if scale is None else scale
    region_list = _names(regions)
    if catalog_path is not None:
        from planner.catalog.csvfile import read_catalog_csv

        catalog = read_catalog_csv(catalog_path)
    else:
        from planner.catalog.store import current_catalog

        catalog = current_catalog(regions=list(region_list) or None)
    from planner.catalog.store import describe_age

    note(describe_age(catalog))
    limits = Limits(
        budget_usd=budget,
        deadline_s=deadline_s,
        regions=region_list,
        market=market,
        include=_names(include),
        exclude=_names(exclude),
        max_instances=max_instances,
        homogeneous=homogeneous,
        arch=None if arch == "any" else (arch or planning.default_arch(descriptor)),
        include_burstable=include_burstable,
    )
    check_burstable_named(limits)
    if region_list:
        known = {offer.region for offer in catalog.offers}
        unknown = [r for r in region_list if r not in known]
        if unknown:
            raise UsageError(f"--regions: {', '.join(unknown)} not in the catalog; it covers {', '.join(sorted(known))}")
    subs = planning.build_problem(
        profile.predictor, catalog, planning.role_groups(descriptor, _virtual_sizes(descriptor)), limits,
        scale=scale, rules=planning.billing_rules(descriptor, output_gb), host_speed=profile.host.speed,
    )
    result = planning.recommend(subs, limits, top=top, solver=solver)
    plans = planning.plan_set(result, limits, descriptor_name=descriptor.name, scale=scale, profile_digest=profile.digest, catalog=catalog, output_gb=output_gb)
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


def _print_table(plans, budget: float) -> None:
    from rich.table import Table

    from d2c.cli.output import console

    table = Table(title=f"plans within ${budget:,.2f}", show_lines=False)
    for column in ("#", "instances per role", "region", "market", "time p50/p90", "cost p50/p90", "headroom"):
        table.add_column(column, justify="right" if column in ("#", "headroom") else "left")
    for plan in plans.plans:
        roles: dict[str, list[str]] = {}
        for alloc in plan.roles:
            roles.setdefault(alloc.role, []).append(f"{alloc.count}x {alloc.instance_type}")
        mix = "; ".join(f"{role}: {' + '.join(items)}" for role, items in roles.items())
        markets = sorted({a.market for a in plan.roles})
        table.add_row(
            f"{plan.rank}{'*' if plan.on_frontier else ''}",
            mix,
            plan.region,
            ",".join(markets),
            f"{format_duration(plan.time_s.p50)} / {format_duration(plan.time_s.p90)}",
            f"${plan.cost_usd.p50:,.2f} / ${plan.cost_usd.p90:,.2f}",
            f"${budget - plan.cost_usd.p90:,.2f}",
        )
    out = console()
    out.print(table)
    for plan in plans.plans:
        out.print(f"#{plan.rank}: {plan.why}")
        if plan.breakdown is not None:
            items = plan.breakdown.to_dict()
            out.print("    p50 " + ", ".join(f"{name.replace('_', ' ')} ${value:,.4f}" for name, value in items.items() if value), highlight=False)
    out.print("* on the cost/time frontier")


COMMANDS: list[click.Command] = [recommend]
