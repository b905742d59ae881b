"""The checks a run's input passes before anything of the run exists (journal row, run folder, lock).

A plan is checked against the descriptor it is carried out for: the same app, only its roles,
the master included, and per role a total count the descriptor allows (its fixed ``count``, or
``min``..``max`` for ``auto``; exactly one master beside other roles). plans.json itself was
checked field by field when it was loaded (:func:`planner.plans.load_plans`).
"""

from __future__ import annotations

from pathlib import Path

from d2c.descriptor import Descriptor
from d2c.errors import UsageError
from planner.plans import Plan, PlanSet


def check_plan_matches(descriptor: Descriptor, planset: PlanSet, plan: Plan, plans_path: Path) -> None:
    """The plan must be made for this descriptor: same name, only its roles, the master included."""
    if planset.descriptor != descriptor.name:
        raise UsageError(
            f"{plans_path}: plans were made for descriptor {planset.descriptor!r}, not {descriptor.name!r} "
            f"({descriptor.path}); run 'd2c recommend' again"
        )
    names = {role.name for role in descriptor.roles}
    planned = [a.role for a in plan.roles]
    unknown = sorted(set(planned) - names)
    if unknown:
        raise UsageError(f"{plans_path}: plan {plan.rank} has role(s) {', '.join(unknown)} that {descriptor.path} does not define; run 'd2c recommend' again")
    missing = sorted(r.name for r in descriptor.roles if r.name not in planned and (r.master or r.min_count > 0))
    if missing:
        raise UsageError(f"{plans_path}: plan {plan.rank} has no hosts for role(s) {', '.join(missing)} of {descriptor.path}; run 'd2c recommend' again")
    services = {r.name for r in descriptor.services}
    totals: dict[str, int] = {}
    for allocation in plan.roles:
        totals[allocation.role] = totals.get(allocation.role, 0) + allocation.count
        # Slots are MPI ranks: a service host runs none, every other host at least one.
        if (allocation.workers_per_instance == 0) != (allocation.role in services):
            kind = "a service role runs no ranks" if allocation.role in services else "only a service role runs no ranks"
            raise UsageError(
                f"{plans_path}: plan {plan.rank} gives role {allocation.role!r} {allocation.workers_per_instance} worker(s) per instance, "
                f"but {kind}; run 'd2c recommend' again"
            )
    for name, count in totals.items():
        role = descriptor.role(name)
        low, high = (role.count, role.count) if role.count is not None else (max(role.min_count, 1), role.max_count)
        if role.master and len(descriptor.roles) > 1:
            low = high = 1
        if not low <= count <= high:
            allowed = f"exactly {low}" if low == high else f"{low} to {high}"
            raise UsageError(
                f"{plans_path}: plan {plan.rank} gives role {name!r} {count} host(s), but {descriptor.path} allows {allowed}; run 'd2c recommend' again"
            )


def check_run_input(descriptor: Descriptor, planset: PlanSet, plan: Plan, *, plans_path: Path, provider: str) -> None:
    """Everything a run's input must pass before anything of the run is created (UsageError)."""
    check_plan_matches(descriptor, planset, plan, plans_path)
    if provider == "aws":
        from executor.providers.aws import check_spread

        check_spread(descriptor.placement, plan.instance_count)
    if provider != "local":
        return
    for allocation in plan.roles:
        role = descriptor.role(allocation.role)
        if not role.image_is_folder:
            raise UsageError(
                f"{descriptor.path}: role {role.name!r}: a rehearsal with --provider local runs apps given as a folder, "
                f"not the VM image {role.image.name}; use --provider aws"
            )
