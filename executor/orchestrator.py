"""One run from plan to report: the state machine behind ``d2c run`` and ``d2c run --resume``.

States (journaled before each step starts, so a crashed controller resumes where it was)::

    created -> provisioning -> provisioned -> uploaded -> running -> fetching -> tearing_down -> finished

* provisioning: the provider launches the plan's hosts, each journaled as soon as its id exists.
  A run that crashed mid-provisioning is torn down and provisioned again.
* provisioned: each host learns the cluster (host list, MPI hostfile, environment, SSH mesh) and
  receives the app folder and the inputs, in parallel.
* uploaded: role commands start detached (other roles first, the master last).

The watchdog also looks before the upload, after each uploaded file and before the commands
start, so a slow upload cannot spend past the budget; while fetching it stops only at the budget
or deadline itself (the reserve is what fetching spends), leaving the outputs not yet fetched.
* running: the master's log is streamed; the watchdog checks budget and deadline; host states are
  checked for instances that vanished. A lost spot host other than the master is replaced (same
  role, type and market; the cluster files are rewritten on every host and the role's command
  started on the newcomer) when the spend so far plus the fleet's price until the plan's p90 time
  and the reserve still fits the budget; any other loss stops the run.
* fetching: outputs and logs are copied back, whatever the outcome, while the master host exists.
* tearing_down: everything the run created is deleted, then the report is written.

Whatever goes wrong — a cloud error, a full disk, a bug — the run still fetches what it can and
tears down, then reports; only a user's "detach" at Ctrl-C leaves it running (resumable with
``d2c run --resume``, stoppable with ``d2c down``). After a failure the journal turns
``best_effort``: a write that fails (the disk is full) no longer stops the teardown, and what was
not recorded is named in the run's last message. A host presenting another host key than the one
pinned stops the run at once: that is someone else answering at the host's address, not a network
blip to wait out.

Outputs are fetched by :mod:`executor.fetch`, which never follows a link out of the output folder;
what it skips is noted and reported. Report assembly lives in :mod:`executor.report`, the profile
calibration in :mod:`executor.calibration`.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from d2c.descriptor import Descriptor
from d2c.errors import CredentialsExpired, D2CError, HostError, HostKeyMismatch, WorkError
from d2c.state import PRIVATE_FILE_MODE, private_dir, runs_dir
from executor.calibration import calibrate
from executor.contextualize import host_files, ordered, ssh_mesh_script
from executor.controller import this_controller
from executor.fetch import fetch_output, open_tree
from executor.journal import Journal, RunRecord
from executor.providers.base import CapacityError, Machine, Provider, ProvisionRequest, deadman_minutes, machines_from_journal
from executor.remote_run import CommandWatch, start_command
from executor.report import run_report, write_report
from executor.run_input import check_run_input
from executor.run_types import RecordingUI, RunResult, RunSettings, RunUI

__all__ = ["Orchestrator", "RecordingUI", "RunResult", "RunSettings", "RunUI", "check_run_input", "start_with_fallback"]
from executor.uploads import total_bytes, upload
from executor.watchdog import Clock, Watchdog, run_watchdog
from planner.billing import SECONDS_PER_MONTH, BillingRules
from planner.plans import Plan, PlanSet

MASTER_TAG = "master"


class HostsLost(WorkError):
    """Hosts of the run stopped outside d2c (spot interruption, someone else's terminate)."""


class OverBudget(WorkError):
    """The watchdog stopped the run before its app started (e.g. a slow upload)."""


def start_with_fallback(
    orchestrator: "Orchestrator",
    descriptor: Descriptor,
    planset: PlanSet,
    plan: Plan,
    *,
    plans_path: Path,
    provider_for: Callable[[Plan], Provider],
    fallback: bool,
    per_run_outputs: bool = False,
) -> RunResult:
    """Run ``plan``; when the cloud lacks capacity or quota for it and ``fallback`` is set, run the
    next-ranked plans in turn (each a run of its own, torn down before the next starts)."""
    result = orchestrator.start(descriptor, planset, plan, plans_path=plans_path, per_run_outputs=per_run_outputs)
    ranks = sorted(p.rank for p in planset.plans if p.rank > plan.rank)
    while fallback and result.capacity_error and ranks:
        plan = planset.plan(ranks.pop(0))
        orchestrator.ui.note(f"{result.message}; trying plan {plan.rank}, as --next-plan-on-capacity allows")
        orchestrator.provider = provider_for(plan)
        result = orchestrator.start(descriptor, planset, plan, plans_path=plans_path, per_run_outputs=per_run_outputs)
    return result


def new_run_id(name: str) -> str:
    """A run id that sorts by time and says what ran: ``<name>-YYYYmmdd-HHMMSS-<hex>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{secrets.token_hex(2)}"


@dataclass
class _Run:
    """What the orchestrator knows about the run it drives."""

    record: RunRecord
    descriptor: Descriptor
    plan: Plan
    machines: list[Machine] = field(default_factory=list)
    watchdog: Watchdog | None = None
    outcome: str | None = None
    reason: str = ""
    exit_status: int | None = None
    capacity_error: bool = False
    credentials_expired: bool = False

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def run_dir(self) -> Path:
        return self.record.run_dir

    def master(self) -> Machine | None:
        master_role = self.descriptor.master.name
        return next((m for m in self.machines if m.role == master_role), None)

    def settle(self, outcome: str, reason: str) -> None:
        """Record the first outcome decided; later ones (e.g. a teardown error) do not override it."""
        if self.outcome is None:
            self.outcome, self.reason = outcome, reason


class Orchestrator:
    """Drives runs with one provider, journaling every step."""

    def __init__(
        self,
        journal: Journal,
        provider: Provider,
        *,
        ui: RunUI | None = None,
        clock: Clock = time.time,
        sleep=time.sleep,
        settings: RunSettings = RunSettings(),
    ):
        self.journal = journal
        self.provider = provider
        self.ui = ui or RecordingUI()
        self.clock = clock
        self.sleep = sleep
        self.settings = settings

    # -- entry points ---------------------------------------------------------------------------

    def start(self, descriptor: Descriptor, planset: PlanSet, plan: Plan, *, plans_path: Path, per_run_outputs: bool = False) -> RunResult:
        """Check the plan against the descriptor, journal a new run and drive it to the end.

        ``per_run_outputs`` (``--allow-concurrent``) puts the outputs in a folder named after the
        run (see :func:`executor.fetch.per_run_target`), so runs side by side never overwrite each other's.
        """
        check_run_input(descriptor, planset, plan, plans_path=plans_path, provider=self.provider.name)
        run_id = new_run_id(descriptor.name)
        run_dir = private_dir(runs_dir() / run_id)
        now = self.clock()
        record = RunRecord(
            run_id=run_id,
            provider=self.provider.name,
            region=plan.region,
            state="created",
            descriptor=str(descriptor.path),
            plans_file=str(Path(plans_path).resolve()),
            plan_rank=plan.rank,
            budget_usd=planset.budget_usd,
            deadline_s=planset.deadline_s,
            hourly_usd=plan.hourly_usd,
            run_dir=run_dir,
            created_at=now,
            details={
                "scale": planset.scale,
                "output_gb": planset.output_gb,
                "predicted": {"time_s": asdict(plan.time_s), "cost_usd": asdict(plan.cost_usd)},
                "simulated": self.provider.simulated,
                "profile": str(self.settings.profile_path) if self.settings.profile_path else None,
                "controller": this_controller(),
                "per_run_outputs": per_run_outputs,
            },
        )
        self.journal.create_run(record)
        self.journal.event(run_id, "created", f"run of plan {plan.rank} ({self.provider.name})", at=now)
        label = " (a rehearsal on this machine; costs are simulated)" if self.provider.simulated else ""
        self.ui.note(f"run {run_id}: plan {plan.rank}, {plan.instance_count} host(s), budget ${planset.budget_usd:.2f}{label}")
        return self._drive(_Run(record, descriptor, plan))

    def resume(self, run_id: str, descriptor: Descriptor, plan: Plan) -> RunResult:
        """Pick up a run whose controller stopped (crash, SIGKILL, detach) where it was."""
        record = self.journal.run(run_id)
        if not record.active:
            return RunResult(run_id, record.outcome or "failed", record.message or "", record.run_dir / "report.json")
        self.journal.update_run(run_id, details={"controller": this_controller()})
        self.journal.event(run_id, "resumed", f"resumed in state {record.state}", at=self.clock())
        self.ui.note(f"run {run_id}: resuming in state {record.state}")
        return self._drive(_Run(record, descriptor, plan))

    # -- the state machine ----------------------------------------------------------------------

    def _state(self, run: _Run, state: str) -> None:
        self.journal.update_run(run.run_id, state=state)
        run.record = self.journal.run(run.run_id)

    def _drive(self, run: _Run) -> RunResult:
        details = run.record.details
        if details.get("outcome"):
            run.settle(details["outcome"], details.get("reason", ""))
        try:
            self._advance(run)
        except KeyboardInterrupt:
            if run.record.state == "running" and self._user_detaches():
                run.settle("detached", f"detached; the run goes on: 'd2c run --resume {run.run_id}' follows it, 'd2c down {run.run_id}' stops it")
                self.ui.note(run.reason)
            else:
                self._fail(run, "stopped", "interrupted by the user (Ctrl-C)")
        except HostKeyMismatch as exc:
            # Someone else answers at the host's address: nothing more is sent to it, not even to fetch.
            self._fail(run, "failed", f"{exc.message}. This may be an attack; the run stops without fetching from that host", fetch=False)
        except D2CError as exc:
            run.capacity_error = isinstance(exc, CapacityError)
            self._fail(run, "failed", exc.message)
        except Exception as exc:  # noqa: BLE001 - whatever broke, the hosts must still go
            self._fail(run, "failed", f"internal error: {type(exc).__name__}: {exc}")
        if run.outcome == "detached":
            # No process follows the run any more, even when this one lives on (the dashboard).
            self.journal.update_run(run.run_id, details={"controller": None})
            self.journal.event(run.run_id, "detached", run.reason, at=self.clock())
            return RunResult(run.run_id, "detached", run.reason, None)
        return self._teardown_and_report(run)

    def _user_detaches(self) -> bool:
        """Ctrl-C while the app runs: ask whether to detach. Any answer but ``detach`` (a second
        Ctrl-C or end of input at the question included) stops the run, so the teardown always follows."""
        try:
            return self.ui.interrupted() == "detach"
        except (Exception, KeyboardInterrupt):  # noqa: BLE001 - no answer is an answer: stop
            return False

    def _fail(self, run: _Run, outcome: str, reason: str, *, fetch: bool = True) -> None:
        """Record why the run ends early, then fetch what can be fetched; from here on a failed
        journal write (a full disk) must not stop the teardown."""
        self.journal.best_effort = True
        self._settle(run, outcome, reason)
        if fetch:
            self._fetch_safely(run)

    def _advance(self, run: _Run) -> None:
        state = run.record.state
        if state in ("created", "provisioning"):
            if state == "provisioning":
                self._note(run, "teardown", "a previous attempt stopped while provisioning; removing what it launched")
                self.provider.teardown(run.run_id, self.journal)
            self._provision(run)
        run.machines = ordered(machines_from_journal(self.journal, run.run_id), run.descriptor.master.name)
        run.watchdog = self._watchdog(run)
        if run.record.state == "provisioned":
            self._contextualize_and_upload(run)
        if run.record.state == "uploaded":
            self._start_commands(run)
        if run.record.state == "running":
            self._watch(run)
        if run.record.state in ("running", "fetching"):
            self._fetch(run)

    def _watchdog(self, run: _Run) -> Watchdog:
        watchdog = run_watchdog(
            self.journal, run.record, machines_from_journal(self.journal, run.run_id, live_only=False),
            clock=self.clock, reserve_s=self.settings.reserve_s, check_every_s=self.settings.poll_s,
            price_source=getattr(self.provider, "spot_prices", None),
        )
        watchdog.add_egress(int(run.record.details.get("egress_bytes", 0)))
        return watchdog

    def _deadman(self, run: _Run, *, budget_usd: float, hourly_usd: float, instances: int, deadline_s: float | None) -> int:
        """Dead-man minutes for ``instances`` hosts costing ``hourly_usd``: with their root volumes at the
        plan's sizes, a public IPv4 address each unless the provider connects privately, and the
        outputs' egress kept back."""
        rules = BillingRules().for_region(run.plan.region)
        root_gb = [a.root_gb or rules.ebs_gb for a in run.plan.roles for _ in range(a.count)]
        ebs_gb = max(root_gb, default=rules.ebs_gb) * instances
        ebs_usd_h = ebs_gb * rules.ebs_usd_gb_month * 3600.0 / SECONDS_PER_MONTH
        ipv4_usd_h = instances * rules.ipv4_usd_h if getattr(self.provider, "connect", "private") == "public" else 0.0
        egress_usd = float(run.record.details.get("output_gb", 0.0)) * rules.egress_rate
        minutes = deadman_minutes(budget_usd=budget_usd, hourly_usd=hourly_usd + ebs_usd_h + ipv4_usd_h, deadline_s=deadline_s, fixed_usd=egress_usd)
        return minutes if self.settings.deadman_s is None else min(minutes, max(1, int(self.settings.deadman_s // 60)))

    def _stop_if_over(self, run: _Run, during: str) -> None:
        """Stop the run (OverBudget) when the watchdog says so; for the steps before the app runs."""
        verdict = run.watchdog.check()
        if verdict is None:
            return
        self._note(run, f"stop-{verdict.reason}", f"{verdict.message}; stopped while {during}, terminating every host")
        self._settle(run, "stopped", verdict.message)
        raise OverBudget(verdict.message)

    def _settle(self, run: _Run, outcome: str, reason: str) -> None:
        """Decide the outcome (the first decision stands) and journal it for a resume."""
        run.settle(outcome, reason)
        self.journal.update_run(run.run_id, details={"outcome": run.outcome, "reason": run.reason})

    def _note(self, run: _Run, kind: str, message: str) -> None:
        self.journal.event(run.run_id, kind, message, at=self.clock())
        self.ui.note(message)

    # -- steps ----------------------------------------------------------------------------------

    def _provision(self, run: _Run) -> None:
        self._state(run, "provisioning")
        record = run.record
        minutes = self._deadman(
            run, budget_usd=record.budget_usd, hourly_usd=run.plan.hourly_usd, instances=run.plan.instance_count, deadline_s=record.deadline_s
        )
        request = ProvisionRequest(
            run_id=run.run_id,
            run_dir=run.run_dir,
            region=run.plan.region,
            allocations=run.plan.roles,
            roles={role.name: role for role in run.descriptor.roles},
            base_image=run.descriptor.base_image,
            placement=run.descriptor.placement,
            deadman_minutes=minutes,
            progress=self.ui.progress,
        )
        if self.provider.simulated:
            self._note(run, "provisioning", f"creating {run.plan.instance_count} rehearsal host(s) on this machine")
        else:
            self._note(run, "provisioning", f"launching {run.plan.instance_count} host(s); each shuts itself down after {minutes} min at the latest (dead-man switch)")
        self.provider.provision(request, self.journal)
        bounds = self.journal.run(run.run_id).details.get("bounds")
        if bounds:
            self._note(run, "bounds", "bounds on every host's life: " + "; ".join(bounds))
        self._state(run, "provisioned")
        self._note(run, "provisioned", "all hosts are up")

    def _contextualize_and_upload(self, run: _Run) -> None:
        workdirs = self._contextualize(run)
        self._note(run, "contextualized", f"{len(run.machines)} host(s) know the cluster (hosts, MPI hostfile, environment)")
        self._upload(run, run.machines, workdirs)
        self._state(run, "uploaded")

    def _contextualize(self, run: _Run) -> dict[str, str]:
        """Tell every host of the run about the cluster; returns (and journals) each host's work folder."""
        descriptor = run.descriptor
        cluster_key = self.provider.cluster_key(run.run_id)
        opened: dict[str, Any] = {}

        def prepare(machine: Machine) -> tuple[str, str]:
            host = self.provider.open_host(machine)
            opened[machine.name] = host
            workdir = self.provider.workdir(machine, descriptor.workdir)
            result = host.run(f"mkdir -p {shlex.quote(workdir)} && cd {shlex.quote(workdir)} && pwd", timeout=60)
            if not result.ok:
                raise HostError(f"{machine.name}: cannot create the work folder {workdir}: {result.stderr_tail}")
            workdir_abs = result.stdout_tail.strip().splitlines()[-1]
            files = host_files(run.machines, machine, run_id=run.run_id, workdir_abs=workdir_abs, app_env=descriptor.env)
            script = ["set -e", f"cd {shlex.quote(workdir_abs)}", "mkdir -p .d2c"]
            script += [f"printf %s {shlex.quote(text)} > {shlex.quote(path)}" for path, text in files.files.items()]
            if cluster_key:
                script.append(ssh_mesh_script(run.machines, cluster_key))
            result = host.run("\n".join(script), timeout=60)
            if not result.ok:
                raise HostError(f"{machine.name}: could not write the cluster description: {result.stderr_tail}")
            return machine.name, workdir_abs

        try:
            with ThreadPoolExecutor(max_workers=min(16, len(run.machines))) as pool:
                workdirs = dict(pool.map(prepare, run.machines))
        finally:
            for host in opened.values():
                host.close()
        self.journal.update_run(run.run_id, details={"workdirs": workdirs})
        return workdirs

    def _upload(self, run: _Run, machines: list[Machine], workdirs: dict[str, str]) -> None:
        """Copy the app folder and the inputs to ``machines``, several streams per host."""
        descriptor = run.descriptor
        pairs: dict[str, list[tuple[Path, str]]] = {}
        for machine in machines:
            role = descriptor.role(machine.role)
            base = workdirs[machine.name]
            host_pairs = [(role.image, base)] if role.image_is_folder else []
            host_pairs += [(t.local, posixpath.join(base, t.remote)) for t in descriptor.inputs]
            pairs[machine.name] = host_pairs
        exclude = tuple(Path(t.local) for t in descriptor.outputs)
        total = total_bytes(pairs, exclude, descriptor.exclude)
        sent = [0]
        counting = threading.Lock()

        def on_bytes(n: int) -> None:
            with counting:
                sent[0] += n
                done = sent[0]
            self.ui.progress("uploading", done, total)
            self._stop_if_over(run, "uploading")

        self._stop_if_over(run, "uploading")
        started = time.monotonic()
        by_name = {m.name: m for m in machines}
        copied = upload(
            {name: (lambda m=by_name[name]: self.provider.open_host(m)) for name in pairs},
            pairs,
            streams=self.settings.streams,
            on_bytes=on_bytes,
            exclude=exclude,
            patterns=descriptor.exclude,
        )
        elapsed = time.monotonic() - started
        self._note(run, "uploaded", f"uploaded {copied / 1e6:.1f} MB to {len(pairs)} host(s) in {elapsed:.1f} s")

    def _start_role_commands(self, run: _Run, machines: list[Machine], workdirs: dict[str, str]) -> None:
        """Start the commands of the non-master roles that have one, on ``machines``."""
        master = run.master()
        for machine in machines:
            role = run.descriptor.role(machine.role)
            if machine is master or not role.command:
                continue
            host = self.provider.open_host(machine)
            try:
                start_command(host, workdir=workdirs[machine.name], tag=machine.role, command=role.command)
            finally:
                host.close()

    def _start_commands(self, run: _Run) -> None:
        workdirs = self.journal.run(run.run_id).details["workdirs"]
        master = run.master()
        self._stop_if_over(run, "starting the app")
        self._start_role_commands(run, run.machines, workdirs)
        host = self.provider.open_host(master)
        try:
            start_command(host, workdir=workdirs[master.name], tag=MASTER_TAG, command=run.descriptor.master.command)
        finally:
            host.close()
        now = self.clock()
        self.journal.update_run(run.run_id, started_at=now, details={"master_started_at": now, "lines_seen": 0})
        self._state(run, "running")
        self._note(run, "started", f"the master command is running on {master.name}")

    def _watch(self, run: _Run) -> None:
        master = run.master()
        details = run.record.details
        host = self.provider.open_host(master)
        watch = CommandWatch(
            host,
            workdir=details["workdirs"][master.name],
            tag=MASTER_TAG,
            done_file=run.descriptor.done_file,
            lines_seen=int(details.get("lines_seen", 0)),
        )
        log_path = run.run_dir / "logs" / "master.log"
        private_dir(log_path.parent)
        last_states = self.clock()
        unreachable_since: float | None = None
        try:
            with open(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE), "a", encoding="utf-8") as log:
                while True:
                    try:
                        if self._watch_once(run, watch, log):
                            return
                        unreachable_since = None
                        now = self.clock()
                        if now - last_states >= self.settings.states_every_s:
                            last_states = now
                            self._check_hosts_while_running(run)
                        self.sleep(self.settings.poll_s)
                    except HostKeyMismatch:
                        raise
                    except HostError as exc:
                        now = self.clock()
                        if unreachable_since is None:
                            self._refresh_access(run)
                        unreachable_since = unreachable_since or now
                        if now - unreachable_since >= self.settings.unreachable_s:
                            raise WorkError(f"lost contact with the master {master.name} for {now - unreachable_since:.0f} s ({exc})") from None
                        try:
                            self._check_hosts_while_running(run)
                        except HostsLost:
                            raise
                        except WorkError as cloud:
                            # The network may be down for the cloud API too; the dead-man switch bounds the cost meanwhile.
                            self.ui.note(f"no answer from {master.name} or the cloud ({cloud}); trying again")
                        self.sleep(self.settings.poll_s)
        finally:
            host.close()

    def _watch_once(self, run: _Run, watch: CommandWatch, log) -> bool:
        """One look at the master; True when the watching is over (ended or stopped)."""
        poll = watch.poll()
        for line in poll.lines:
            log.write(line + "\n")
            self.ui.log_line(line)
        if poll.lines:
            log.flush()
            self.journal.update_run(run.run_id, details={"lines_seen": watch.lines_seen})
        watchdog = run.watchdog
        now = self.clock()
        if poll.finished:
            run.exit_status = poll.exit_status if poll.exit_status is not None else 0
            self.journal.update_run(run.run_id, details={"master_ended_at": now, "exit_status": run.exit_status})
            if run.exit_status == 0:
                how = "created the done-file" if poll.exit_status is None else "exited 0"
                self._settle(run, "succeeded", f"the master command {how}")
            else:
                self._settle(run, "failed", f"the master command exited with status {run.exit_status}; outputs and logs were fetched, see 'd2c logs {run.run_id}'")
            self._note(run, "master-ended", run.reason)
            return True
        verdict = watchdog.check()
        if verdict is not None:
            self.journal.update_run(run.run_id, details={"master_ended_at": now})
            self._note(run, f"stop-{verdict.reason}", verdict.message + "; fetching partial outputs and terminating every host")
            self._settle(run, "stopped", verdict.message)
            watch.kill()
            return True
        started = float(run.record.details.get("master_started_at", run.record.created_at))
        spent = watchdog.accrued_usd(now)
        self.ui.live(now - started, spent, max(watchdog.budget_usd - watchdog.reserve_usd(), 0.0))
        return False

    def _check_hosts_while_running(self, run: _Run) -> None:
        """``_check_hosts``, except that AWS credentials expiring mid-run do not stop the app.

        Watching the app needs only SSH; what is lost without credentials is the view of the
        instances (a spot interruption is then seen as the master not answering). The watchdog
        still counts the money by the clock, and the hosts' own bounds (the in-guest timer, the
        server-side schedule) do not depend on the desktop's credentials. Credentials boto3 refreshes
        by itself work again at a later check: a profile that assumes a role ("refreshing credentials
        as needed", https://boto3.amazonaws.com/v1/documentation/api/latest/guide/credentials.html),
        or an SSO profile once ``aws sso login`` has renewed its token. Expired static keys stay
        expired, and the run then ends as the teardown message says.
        """
        try:
            self._check_hosts(run)
        except CredentialsExpired as exc:
            if not run.credentials_expired:
                self._note(run, "credentials-expired", (
                    f"the AWS credentials expired; the app goes on and d2c watches it over SSH, but sees no spot "
                    f"interruption until you log in again ({exc.login_hint}); the budget, the deadline and every "
                    f"host's own bounds still hold"))
            run.credentials_expired = True
            return
        if run.credentials_expired:
            self._note(run, "credentials-renewed", "the AWS credentials work again; d2c sees the instances again")
        run.credentials_expired = False

    def _check_hosts(self, run: _Run) -> None:
        """Notice hosts that vanished; replace lost spot workers while the budget allows, else stop."""
        states = self.provider.states(run.run_id, self.journal)
        lost = [m for m in run.machines if states.get(m.instance_id, "terminated") not in ("pending", "running")]
        if not lost:
            return
        now = self.clock()
        ended = dict(self.journal.run(run.run_id).details.get("ended", {}))
        for machine in lost:
            run.watchdog.host_ended(machine.instance_id, now)
            ended[machine.instance_id] = now
            self.journal.mark_deleted(run.run_id, "instance", machine.instance_id)
        self.journal.update_run(run.run_id, details={"ended": ended})
        names = ", ".join(f"{m.name} ({m.instance_id}, {states.get(m.instance_id, 'gone')})" for m in lost)
        master = run.master()
        if any(m.instance_id == master.instance_id or m.market != "spot" for m in lost):
            raise HostsLost(f"host(s) {names} stopped outside d2c (a spot interruption or a manual terminate); the run cannot go on without them")
        needed = self._cost_with_replacements(run, lost, now)
        if needed > run.watchdog.budget_usd:
            raise HostsLost(
                f"spot host(s) {names} were interrupted; replacing them would bring the run to about ${needed:.2f} "
                f"of the ${run.watchdog.budget_usd:.2f} budget, so it stops"
            )
        self._note(run, "replacing", f"spot host(s) {names} were interrupted; launching replacements (the run should stay within about ${needed:.2f} of the ${run.watchdog.budget_usd:.2f} budget)")
        self._replace(run, lost)

    def _refresh_access(self, run: _Run) -> None:
        """Before counting an unanswering host as lost: open SSH to the caller's new address, if it moved."""
        try:
            changed = self.provider.refresh_access(run.run_id, self.journal)
        except D2CError as exc:
            self.ui.note(f"could not update the SSH rule for your address ({exc.message})")
            return
        if changed:
            self._note(run, "access", changed)

    def _cost_with_replacements(self, run: _Run, lost: list[Machine], now: float) -> float:
        """Spend so far plus the fleet, replacements included, until the plan's p90 time and the reserve."""
        started = float(self.journal.run(run.run_id).details.get("master_started_at", now))
        remaining_s = max(run.plan.time_s.p90 - (now - started), 0.0) + self.settings.reserve_s
        hourly = run.watchdog.hourly_usd + sum(m.price_usd_h for m in lost)
        return run.watchdog.accrued_usd(now) + hourly * max(remaining_s, 60.0) / 3600.0

    def _replace(self, run: _Run, lost: list[Machine]) -> None:
        """Launch one new host per lost one (same role, type and market), tell the cluster, start its role."""
        counts: dict[str, int] = {}
        for machine in lost:
            counts[machine.role] = counts.get(machine.role, 0) + 1
        every = machines_from_journal(self.journal, run.run_id, live_only=False)
        first_index = {role: 1 + max(int(m.name.rsplit("-", 1)[-1]) for m in every if m.role == role) for role in counts}
        record = self.journal.run(run.run_id)
        spent = run.watchdog.accrued_usd()
        request = ProvisionRequest(
            run_id=run.run_id,
            run_dir=run.run_dir,
            region=run.plan.region,
            allocations=tuple(replace(a, count=counts[a.role]) for a in run.plan.roles if a.role in counts),
            roles={role.name: role for role in run.descriptor.roles},
            base_image=run.descriptor.base_image,
            placement=run.descriptor.placement,
            deadman_minutes=self._deadman(
                run,
                budget_usd=record.budget_usd - spent,
                hourly_usd=run.watchdog.hourly_usd + sum(m.price_usd_h for m in lost),
                instances=len(run.machines),
                deadline_s=None if run.watchdog.deadline_at is None else max(run.watchdog.deadline_at - self.clock(), 60.0),
            ),
            progress=self.ui.progress,
            first_index=first_index,
        )
        new = self.provider.provision(request, self.journal)
        run.watchdog.machines.extend(new)
        run.machines = ordered(machines_from_journal(self.journal, run.run_id), run.descriptor.master.name)
        workdirs = self._contextualize(run)
        self._upload(run, new, workdirs)
        self._start_role_commands(run, new, workdirs)
        self._note(run, "replaced", f"{', '.join(m.name for m in new)} joined the run in place of {', '.join(m.name for m in lost)}")

    def _fetch_safely(self, run: _Run) -> None:
        try:
            self._fetch(run)
        except HostKeyMismatch:
            raise
        except Exception as exc:  # noqa: BLE001 - fetching is a courtesy on the way to the teardown
            text = exc.message if isinstance(exc, D2CError) else f"{type(exc).__name__}: {exc}"
            self._note(run, "fetch-failed", f"outputs not fetched: {text}")

    def _fetch(self, run: _Run) -> None:
        master = run.master()
        if master is None or "workdirs" not in self.journal.run(run.run_id).details:
            return
        try:
            state = self.provider.states(run.run_id, self.journal).get(master.instance_id)
        except CredentialsExpired:
            # AWS cannot be asked, but the outputs come over SSH: try the master all the same.
            state = "unknown"
        if state not in ("pending", "running", "unknown"):
            self._note(run, "fetch-skipped", f"the master {master.name} is gone; no outputs to fetch")
            return
        self._state(run, "fetching")
        details = self.journal.run(run.run_id).details
        workdir = details["workdirs"][master.name]
        per_run = run.run_id if details.get("per_run_outputs") else None
        host = self.provider.open_host(master)
        fetched = []
        nbytes = 0
        try:
            tree = open_tree(host)
            try:
                for index, transfer in enumerate(run.descriptor.outputs, start=1):
                    self.ui.progress("downloading", index - 1, len(run.descriptor.outputs))
                    verdict = run.watchdog.check(keep_reserve=False)
                    if verdict is not None:
                        remaining = run.descriptor.outputs[index - 1 :]
                        fetched += [{"remote": t.remote, "local": str(t.local), "fetched": False} for t in remaining]
                        self._stop_fetching(run, verdict.message, [t.remote for t in remaining])
                        break
                    entry = self._fetch_one(run, tree, workdir, transfer.remote, Path(transfer.local), per_run)
                    nbytes += entry.pop("bytes")
                    fetched.append(entry)
                self.ui.progress("downloading", len(run.descriptor.outputs), len(run.descriptor.outputs))
                log = run.run_dir / "logs" / "master.log"
                self._fetch_one(run, tree, workdir, f".d2c/{MASTER_TAG}.log", log, None, quiet=True)
                if log.is_file() and not log.is_symlink():
                    log.chmod(PRIVATE_FILE_MODE)
            finally:
                tree.close()
        finally:
            host.close()
        run.watchdog.add_egress(nbytes)
        self.journal.update_run(run.run_id, details={"outputs": fetched, "egress_bytes": run.watchdog.egress_bytes})
        got = [f["local"] for f in fetched if f["fetched"]]
        self._note(run, "fetched", f"fetched {len(got)} of {len(fetched)} output(s) ({nbytes / 1e6:.2f} MB)" + (f": {', '.join(got)}" if got else ""))

    def _fetch_one(self, run: _Run, tree, workdir: str, remote: str, local: Path, per_run: str | None, *, quiet: bool = False) -> dict[str, Any]:
        """Fetch one output; what was skipped or replaced is noted (and kept for the report)."""
        try:
            done, target = fetch_output(tree, workdir, remote, local, per_run=per_run)
        except (HostError, OSError) as exc:
            if not quiet:
                self._note(run, "output-missing", f"output {remote} not fetched: {exc}")
            return {"remote": remote, "local": str(local), "fetched": False, "bytes": 0}
        for line in done.skipped:
            self._note(run, "output-skipped", f"not fetched: {line}")
        if done.replaced and not quiet:
            self._note(run, "output-replaced", f"{done.replaced} file(s) already in {target} were replaced by this run's")
        fetched = not (done.skipped and done.files == 0 and done.links == 0)
        entry = {"remote": remote, "local": str(target), "fetched": fetched, "bytes": done.bytes}
        if done.skipped:
            entry["skipped"] = done.skipped
        return entry

    def _stop_fetching(self, run: _Run, message: str, left: list[str]) -> None:
        """Fetching outran the budget or deadline: the run is stopped, whatever the app's outcome was."""
        reason = f"{message}; while fetching outputs, so {', '.join(left)} stayed behind"
        self._note(run, "stop-fetching", reason + "; terminating every host")
        if run.outcome in (None, "succeeded"):
            run.outcome, run.reason = "stopped", reason
            self.journal.update_run(run.run_id, details={"outcome": run.outcome, "reason": run.reason})

    def _teardown_and_report(self, run: _Run) -> RunResult:
        # Whatever the journal can still record, the hosts go: a full disk must not keep them up.
        self.journal.best_effort = True
        if not run.machines:
            run.machines = machines_from_journal(self.journal, run.run_id, live_only=False)
        if run.watchdog is None:
            run.watchdog = self._watchdog(run)
        self._state(run, "tearing_down")
        teardown_error = None
        try:
            for line in self.provider.teardown(run.run_id, self.journal):
                self.journal.event(run.run_id, "deleted", line, at=self.clock())
        except CredentialsExpired as exc:
            bounds = self.journal.run(run.run_id).details.get("bounds") or []
            until = f"; until then the hosts stay bounded ({'; '.join(bounds)})" if bounds else ""
            teardown_error = (f"the hosts could not be deleted because the AWS credentials expired; {exc.login_hint}, "
                              f"then run 'd2c down {run.run_id}'{until}")
        except Exception as exc:  # noqa: BLE001 - reported, with the command that finishes the job
            text = exc.message if isinstance(exc, D2CError) else f"{type(exc).__name__}: {exc}"
            teardown_error = f"teardown incomplete ({text}); run 'd2c down {run.run_id}'"
        now = self.clock()
        for machine in run.watchdog.machines:
            run.watchdog.host_ended(machine.instance_id, now)
        if run.outcome is None:
            run.settle("failed", "the run ended without a result")
        message = run.reason if teardown_error is None else f"{run.reason}; {teardown_error}"
        if teardown_error is None:
            self._note(run, "torn-down", f"deleted everything the run created ({len(run.machines)} host(s))")
        else:
            self._note(run, "teardown-failed", teardown_error)
        calibrated = self._calibrate(run)
        report_path = self._write_report(run, now, calibrated)
        self.journal.update_run(run.run_id, state="finished", finished_at=now, outcome=run.outcome, message=message)
        if self.journal.unsaved:
            message += f"; the journal could not record {len(self.journal.unsaved)} change(s) (is the disk full?); 'd2c down {run.run_id}' tidies it once there is space"
        outcome = run.outcome if teardown_error is None else "failed"
        return RunResult(run.run_id, outcome, message, report_path, capacity_error=run.capacity_error)

    def _calibrate(self, run: _Run) -> bool:
        """Append a successful cloud run to the profile (never a rehearsal; never at the cost of the report)."""
        if run.outcome != "succeeded" or self.provider.simulated:
            return False
        try:
            done = calibrate(self.settings.profile_path, run.plan, self.journal.run(run.run_id).details)
        except (D2CError, OSError, ValueError, KeyError) as exc:
            self._note(run, "calibration-failed", f"could not add the run to {self.settings.profile_path}: {exc}")
            return False
        if done:
            self._note(run, "calibrated", f"appended the measured run to {self.settings.profile_path}")
        return done

    def _write_report(self, run: _Run, now: float, calibrated: bool) -> Path | None:
        details = self.journal.run(run.run_id).details
        report = run_report(
            record=run.record,
            details=details,
            descriptor=run.descriptor.name,
            plan=run.plan,
            provider=self.provider.name,
            simulated=self.provider.simulated,
            watchdog=run.watchdog,
            now=now,
            outcome=run.outcome,
            reason=run.reason,
            exit_status=run.exit_status,
            calibrated=calibrated,
        )
        try:
            return write_report(run.run_dir, report)
        except OSError as exc:
            self.ui.note(f"could not write {run.run_dir / 'report.json'}: {exc.strerror or exc}; cost so far ${report['cost_usd']:.4f}")
            return None
