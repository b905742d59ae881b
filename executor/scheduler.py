"""A server-side bound on a run: an EventBridge Scheduler one-time schedule that terminates its instances.

The in-guest timer and the user-data ``shutdown`` run inside the instance; this one runs in AWS,
so it holds even when the image's timer is missing or the guest hangs. At launch, when a role
EventBridge Scheduler can assume is available (``--scheduler-role ARN``, or a role named
``d2c-scheduler``), d2c creates one schedule per run:

* ``ScheduleExpression = at(yyyy-mm-ddThh:mm:ss)`` in UTC, a one-time schedule
  (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html#one-time);
* the universal target ``arn:aws:scheduler:::aws-sdk:ec2:terminateInstances`` with the
  instance ids as the API's input (https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-targets-universal.html);
* ``ActionAfterCompletion = DELETE``, so a schedule that fired removes itself
  (https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-schedule-delete.html);
* ``FlexibleTimeWindow`` off, so it fires at that minute.

Schedules carry no tags (the Scheduler API tags schedule groups, not schedules), so the run id is
in the name, ``d2c-<run id>``, and teardown and ``d2c down --all`` find them by that prefix.

The role needs a trust policy for ``scheduler.amazonaws.com`` and ``ec2:TerminateInstances``; a
role that is missing or cannot be assumed is not an error: the run goes on with its in-guest bound
and says so. moto's server implements the Scheduler API, so the tests create, read and delete
real schedules; EventBridge firing the target cannot run there.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from d2c.aws import client

TERMINATE_TARGET = "arn:aws:scheduler:::aws-sdk:ec2:terminateInstances"
DEFAULT_ROLE_NAME = "d2c-scheduler"
NAME_PREFIX = "d2c-"
SCHEDULER_PRINCIPAL = "scheduler.amazonaws.com"


def schedule_name(run_id: str) -> str:
    """The schedule's name for ``run_id`` (names are at most 64 characters)."""
    return (NAME_PREFIX + run_id)[:64]


def run_of(name: str) -> str | None:
    """The run id a d2c schedule's name carries, or None for other schedules."""
    return name[len(NAME_PREFIX):] if name.startswith(NAME_PREFIX) else None


def at_expression(when: float) -> str:
    """``at(...)`` for the epoch second ``when``, in UTC, rounded up to the next whole minute."""
    moment = datetime.fromtimestamp(when + 59, tz=timezone.utc).replace(second=0, microsecond=0)
    return f"at({moment.strftime('%Y-%m-%dT%H:%M:%S')})"


def find_role(role_arn: str | None, region: str) -> tuple[str | None, str | None]:
    """(role ARN, None) when a usable scheduler role exists, else (None, why not).

    ``role_arn`` is the user's ``--scheduler-role``; without it the account's role named
    ``d2c-scheduler`` is looked up. A role whose trust policy does not name
    ``scheduler.amazonaws.com`` cannot be assumed by EventBridge Scheduler.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    name = role_arn.rsplit("/", 1)[-1] if role_arn else DEFAULT_ROLE_NAME
    try:
        role = client("iam", region, attempts=2).get_role(RoleName=name)["Role"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchEntity":
            return None, f"no IAM role named {name}" + ("" if role_arn else " (create it, or pass --scheduler-role ARN)")
        if role_arn:
            return role_arn, None  # cannot read IAM; let create_schedule say whether the role works
        return None, f"the IAM role {name} cannot be read ({code})"
    except BotoCoreError as exc:
        return None, f"IAM cannot be reached ({type(exc).__name__})"
    policy = role.get("AssumeRolePolicyDocument") or {}
    if isinstance(policy, str):
        from urllib.parse import unquote

        policy = json.loads(unquote(policy))
    principals = []
    for statement in policy.get("Statement", []):
        service = (statement.get("Principal") or {}).get("Service", [])
        principals += [service] if isinstance(service, str) else list(service)
    if SCHEDULER_PRINCIPAL not in principals:
        return None, f"the IAM role {name} does not trust {SCHEDULER_PRINCIPAL}, so EventBridge Scheduler cannot assume it"
    return role["Arn"], None


def create_terminate_schedule(*, region: str, run_id: str, instance_ids: list[str], at: float, role_arn: str) -> str:
    """Create (or replace) the run's one-time schedule terminating ``instance_ids`` at ``at``; returns its name."""
    scheduler = client("scheduler", region)
    name = schedule_name(run_id)
    delete_schedule(region, name)
    scheduler.create_schedule(
        Name=name,
        Description=f"d2c run {run_id}: terminate its instances at its budget or deadline limit",
        ScheduleExpression=at_expression(at),
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={"Arn": TERMINATE_TARGET, "RoleArn": role_arn, "Input": json.dumps({"InstanceIds": sorted(instance_ids)})},
    )
    return name


def delete_schedule(region: str, name: str) -> bool:
    """Delete the schedule ``name``; False when it was not there (fired and deleted itself, or never made)."""
    from botocore.exceptions import ClientError

    try:
        client("scheduler", region).delete_schedule(Name=name)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") == "ResourceNotFoundException":
            return False
        raise


def d2c_schedules(region: str) -> dict[str, str]:
    """Every d2c schedule in ``region``: name -> run id."""
    scheduler = client("scheduler", region)
    found: dict[str, str] = {}
    for page in scheduler.get_paginator("list_schedules").paginate(NamePrefix=NAME_PREFIX):
        for schedule in page.get("Schedules", []):
            run = run_of(schedule["Name"])
            if run:
                found[schedule["Name"]] = run
    return found
