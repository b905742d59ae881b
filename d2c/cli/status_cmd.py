"""``d2c status``: every run at a glance, like ``sky status``; one run with its history; the spend.

Columns: run, started (local time), elapsed (to the end, or now while it runs), the instance mix
and region, state, spend against the budget, outcome. A finished run's spend is its report's
``cost_usd``; a run still going is priced from the journal as the watchdog prices it (each host's
recorded price per second from launch, EC2's one-minute minimum), instances only. A rehearsal
(``--provider local``) spends nothing: its figures are what the plan's prices would have charged,
and the table marks them ``(sim)``.

``--json`` prints (``version`` 1)::

    {"version": 1, "runs": [{"run_id", "provider", "simulated": bool, "region", "state", "outcome",
      "message", "started_at": ISO-8601, "finished_at": ISO-8601 | null, "elapsed_s",
      "mix": [{"role", "instance_type", "market", "count"}], "spent_usd", "budget_usd",
      "deadline_s", "predicted_time_s": {"p50", "p90"} | null, "controller": "running"|"gone"|null,
      "live_resources": [{"kind", "id", "role"}]}]}

``--spend`` totals what runs cost this calendar month (UTC, as AWS bills: a billing period runs
from the first of the month to the first of the next, 00:00 UTC —
https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_payments_BillingPeriod.html)
and all time, cloud runs apart from rehearsals; with ``--json`` (``version`` 1)::

    {"version": 1, "month": "YYYY-MM", "this_month": {"usd", "runs"}, "all_time": {"usd", "runs"},
     "rehearsals": {"this_month": {"usd", "runs"}, "all_time": {"usd", "runs"}}}

These are d2c's own figures from its journal; AWS's bill (Cost Explorer) is the authority.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone

import click

STATUS_VERSION = 1


def run_spend(journal, record, now: float) -> float:
    """What ``record`` has cost: its report's total when it has one, else its hosts priced until they ended or ``now``."""
    from executor.providers.base import Machine

    if not record.active:
        report = _report(record)
        if report is not None:
            return float(report.get("cost_usd", 0.0))
    total = 0.0
    for resource in journal.resources(record.run_id, "instance"):
        if "name" not in resource.details:
            continue
        machine = Machine.from_details(resource.details)
        ended = resource.deleted_at or record.finished_at or now
        total += machine.accrued_usd(min(ended, now))
    return total


def _report(record) -> dict | None:
    from d2c.errors import UsageError
    from executor.report import load_report

    try:
        return load_report(record.run_dir)
    except (UsageError, OSError, ValueError):
        return None


def _mix(journal, run_id: str) -> list[dict]:
    """The run's hosts grouped by role, type and market, as journaled at launch."""
    from executor.providers.base import machines_from_journal

    counts = Counter((m.role, m.instance_type, m.market) for m in machines_from_journal(journal, run_id, live_only=False))
    return [{"role": role, "instance_type": kind, "market": market, "count": n} for (role, kind, market), n in sorted(counts.items())]


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


def status_rows(journal, runs, now: float) -> list[dict]:
    """The ``--json`` rows of ``runs``."""
    from executor.controller import controller_alive

    rows = []
    for run in runs:
        alive = controller_alive(run.details) if run.active else None
        predicted = run.details.get("predicted", {}).get("time_s") or None
        rows.append(
            {
                "run_id": run.run_id,
                "provider": run.provider,
                "simulated": bool(run.details.get("simulated", run.provider == "local")),
                "region": run.region,
                "state": run.state,
                "outcome": run.outcome,
                "message": run.message,
                "started_at": _iso(run.created_at),
                "finished_at": _iso(run.finished_at),
                "elapsed_s": round((run.finished_at or now) - run.created_at, 1),
                "mix": _mix(journal, run.run_id),
                "spent_usd": round(run_spend(journal, run, now), 6),
                "budget_usd": run.budget_usd,
                "deadline_s": run.deadline_s,
                "predicted_time_s": predicted,
                "controller": None if alive is None else ("running" if alive else "gone"),
                "live_resources": [{"kind": r.kind, "id": r.resource_id, "role": r.role} for r in journal.resources(run.run_id, live_only=True)],
            }
        )
    return rows


def spend_totals(rows: list[dict], now: float) -> dict:
    """This month's and all-time spend of ``rows`` (``status_rows``), cloud runs apart from rehearsals."""
    month = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m")

    def total(selected: list[dict]) -> dict:
        return {"usd": round(sum(r["spent_usd"] for r in selected), 6), "runs": len(selected)}

    def split(selected: list[dict]) -> dict:
        return {"this_month": total([r for r in selected if r["started_at"][:7] == month]), "all_time": total(selected)}

    cloud = split([r for r in rows if not r["simulated"]])
    return {"version": STATUS_VERSION, "month": month, **cloud, "rehearsals": split([r for r in rows if r["simulated"]])}


def _mix_text(row: dict) -> str:
    mix = ", ".join(f"{m['count']}x {m['instance_type']}{' spot' if m['market'] == 'spot' else ''}" for m in row["mix"]) or "-"
    return f"{mix} in {row['region']}"


def _spend_text(row: dict) -> str:
    from d2c.cli.run_display import money

    return f"{money(row['spent_usd'])}/{money(row['budget_usd'])}" + (" (sim)" if row["simulated"] else "")


WIDE = 120
"""From this terminal width on, every field has a column of its own."""


def _print_table(rows: list[dict]) -> None:
    """One row per run; on narrower terminals than WIDE the mix goes under the run id, elapsed under
    started and the outcome replaces the state of a finished run, so that no name is cut."""
    from rich import box
    from rich.table import Table

    from d2c.cli.output import console
    from d2c.durations import format_clock

    out = console()
    wide = out.width >= WIDE
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    longest = max(len(row["run_id"]) for row in rows)
    table.add_column("run", no_wrap=not wide, min_width=longest)
    table.add_column("started", no_wrap=True)
    if wide:
        table.add_column("elapsed", no_wrap=True, justify="right")
        table.add_column("mix, region")
    table.add_column("state", no_wrap=True)
    table.add_column("spend/budget", no_wrap=True, justify="right")
    if wide:
        table.add_column("outcome", no_wrap=True)
    for row in rows:
        started = datetime.fromisoformat(row["started_at"]).astimezone().strftime("%m-%d %H:%M")
        elapsed = format_clock(row["elapsed_s"])
        if wide:
            table.add_row(row["run_id"], started, elapsed, _mix_text(row), row["state"], _spend_text(row), row["outcome"] or "-")
        else:
            state = row["outcome"] if row["state"] == "finished" and row["outcome"] else row["state"]
            table.add_row(f"{row['run_id']}\n[dim]  {_mix_text(row)}[/dim]", f"{started}\n[dim]for {elapsed}[/dim]", state, _spend_text(row).replace(" (sim)", "\n[dim](sim)[/dim]"))
    out.print(table)


@click.command("status")
@click.argument("run_id", required=False)
@click.option("--spend", "show_spend", is_flag=True, help="what runs cost this month and all time")
@click.option("--json", "as_json", is_flag=True, help="stable JSON (version 1, documented in d2c/cli/status_cmd.py)")
def status_cmd(run_id, show_spend, as_json):
    """Show runs: started, elapsed, instances, state, spend against budget, outcome (one RUN: with its history)."""
    from d2c.cli.output import print_json
    from executor.journal import open_journal

    journal = open_journal(read_only=True)
    now = time.time()
    runs = [journal.run(run_id)] if run_id else journal.runs()
    rows = status_rows(journal, runs, now)
    if show_spend:
        totals = spend_totals(rows, now)
        if as_json:
            print_json(totals)
            return
        _print_spend(totals)
        return
    if as_json:
        print_json({"version": STATUS_VERSION, "runs": rows})
        return
    if not rows:
        click.echo("no runs yet; start one with 'd2c run'")
        return
    _print_table(rows)
    for row in rows:
        if row["controller"] == "gone":
            click.echo(f"{row['run_id']}: controller gone — 'd2c run --resume {row['run_id']}' or 'd2c down {row['run_id']}'")
        if row["live_resources"] and row["state"] == "finished":
            click.echo(f"{row['run_id']}: {len(row['live_resources'])} resource(s) still exist — 'd2c down {row['run_id']}'")
    if run_id:
        for event in journal.events(run_id):
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            click.echo(f"{stamp} {event.kind}: {event.message}")


def _print_spend(totals: dict) -> None:
    from d2c.cli.run_display import money

    def line(label: str, part: dict) -> str:
        return f"{label}: {money(part['usd'])} over {part['runs']} run{'' if part['runs'] == 1 else 's'}"

    click.echo(line(f"spent this month ({totals['month']}, UTC)", totals["this_month"]))
    click.echo(line("spent all time", totals["all_time"]))
    rehearsals = totals["rehearsals"]
    if rehearsals["all_time"]["runs"]:
        click.echo(line("rehearsals on this machine (simulated, not billed), all time", rehearsals["all_time"]))
    click.echo("d2c's own figures from its journal; AWS's bill (Cost Explorer) is the authority")


COMMANDS: list[click.Command] = [status_cmd]
