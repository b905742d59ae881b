"""Sampling the whole process tree of a running experiment.

Two samplers return the same :class:`TreeSample`: on this machine :class:`LocalTreeSampler`
uses psutil; on a VM over SSH :class:`ProcTreeSampler` runs one short shell command per sample
that walks ``/proc`` (children found through the parent pid in ``/proc/*/stat``), so nothing
needs installing in the VM. :class:`TreeAccumulator` folds samples into a :class:`SampleSummary`.

Each process's threads' ``schedstat`` gives the time they spent on a CPU and the time they were
runnable but waiting for one; their ratio is the run's *contention* (other work on a shared
desktop taking the CPUs), which the model uses to estimate the runtime on a quiet host.

CPU time is the user and system time of every process seen in the tree, each at its last
sample. Times the kernel credits to a parent for children it reaped are left out: those children
were usually sampled alive already and would be counted twice. Sampling is dense in a run's
first seconds so that short-lived processes are seen.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from d2c.transport.base import Host

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "busybox"})


@dataclass(frozen=True)
class ProcessSample:
    """One process of the tree at one instant."""

    pid: int
    ppid: int
    name: str
    cpu_user_s: float
    cpu_system_s: float
    rss_mb: float
    threads: int
    read_bytes: int = 0
    write_bytes: int = 0
    sched_cpu_s: float = 0.0
    """Time its threads spent on a CPU (``/proc/<pid>/task/*/schedstat``, first field)."""
    run_delay_s: float = 0.0
    """Time its threads spent runnable but waiting for a CPU (second field)."""


@dataclass(frozen=True)
class TreeSample:
    """The tree at one instant, root first."""

    time_s: float
    processes: tuple[ProcessSample, ...]


class TreeSampler(Protocol):
    """Something that can take a sample of a process tree."""

    def sample(self) -> TreeSample | None:
        """The tree now, or None when the root has gone."""


@dataclass(frozen=True)
class SampleSummary:
    """What a run's samples say, stored with each run in profile.json."""

    samples: int
    cpu_user_s: float
    cpu_system_s: float
    utilisation_mean: float
    """Mean busy cores (CPU seconds per wall second) over the run."""
    utilisation_peak: float
    peak_rss_mb: float
    """Peak of the whole tree's resident memory."""
    master_rss_mb: float | None
    """Peak RSS of the app's main process (the first process below any wrapping shells)."""
    worker_rss_mb: float | None
    """Peak RSS of the largest other process, or None when the app is a single process."""
    read_mb: float
    write_mb: float
    max_processes: int
    max_threads: int
    runqueue_wait_s: float = 0.0
    contention: float = 0.0
    """Share of the tree's runnable time spent waiting for a CPU taken by other work: the
    run's wall time times ``1 - contention`` estimates its runtime on a quiet host."""

    @property
    def cpu_s(self) -> float:
        """User plus system CPU seconds."""
        return self.cpu_user_s + self.cpu_system_s

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


class TreeAccumulator:
    """Folds successive samples into totals and peaks."""

    def __init__(self) -> None:
        self._cpu: dict[int, tuple[float, float]] = {}
        self._io: dict[int, tuple[int, int]] = {}
        self._rss_peak: dict[int, float] = {}
        self._master: int | None = None
        self._samples = 0
        self._peak_rss = 0.0
        self._max_processes = 0
        self._max_threads = 0
        self._last: tuple[float, float] | None = None
        self._peak_util = 0.0
        self._shells: set[int] = set()
        self._sched: dict[int, tuple[float, float]] = {}

    def add(self, sample: TreeSample) -> None:
        """Take one more sample into account."""
        if not sample.processes:
            return
        self._samples += 1
        for p in sample.processes:
            user, system = self._cpu.get(p.pid, (0.0, 0.0))
            self._cpu[p.pid] = (max(user, p.cpu_user_s), max(system, p.cpu_system_s))
            read, write = self._io.get(p.pid, (0, 0))
            self._io[p.pid] = (max(read, p.read_bytes), max(write, p.write_bytes))
            self._rss_peak[p.pid] = max(self._rss_peak.get(p.pid, 0.0), p.rss_mb)
            on_cpu, delay = self._sched.get(p.pid, (0.0, 0.0))
            self._sched[p.pid] = (max(on_cpu, p.sched_cpu_s), max(delay, p.run_delay_s))
        if self._master is None or self._master in self._shells:
            self._master = _master_pid(sample.processes)
        self._peak_rss = max(self._peak_rss, sum(p.rss_mb for p in sample.processes))
        self._max_processes = max(self._max_processes, len(sample.processes))
        self._max_threads = max(self._max_threads, sum(p.threads for p in sample.processes))
        point = (sample.time_s, self._cpu_total())
        if self._last is not None and point[0] > self._last[0]:
            self._peak_util = max(self._peak_util, (point[1] - self._last[1]) / (point[0] - self._last[0]))
        self._last = point

    def _cpu_total(self) -> float:
        return sum(u + s for u, s in self._cpu.values())

    def summary(self, wall_s: float) -> SampleSummary:
        """The summary of everything seen, for a run that lasted ``wall_s`` seconds."""
        user = sum(u for u, _ in self._cpu.values())
        system = sum(s for _, s in self._cpu.values())
        master_rss = self._rss_peak.get(self._master) if self._master is not None else None
        others = [v for pid, v in self._rss_peak.items() if pid != self._master and pid not in self._shells]
        on_cpu = sum(c for c, _ in self._sched.values())
        waiting = sum(d for _, d in self._sched.values())
        return SampleSummary(
            samples=self._samples,
            cpu_user_s=round(user, 3),
            cpu_system_s=round(system, 3),
            utilisation_mean=round((user + system) / wall_s, 3) if wall_s > 0 else 0.0,
            utilisation_peak=round(self._peak_util, 3),
            peak_rss_mb=round(self._peak_rss, 2),
            master_rss_mb=None if master_rss is None else round(master_rss, 2),
            worker_rss_mb=round(max(others), 2) if others else None,
            read_mb=round(sum(r for r, _ in self._io.values()) / 1e6, 3),
            write_mb=round(sum(w for _, w in self._io.values()) / 1e6, 3),
            max_processes=self._max_processes,
            max_threads=self._max_threads,
            runqueue_wait_s=round(waiting, 3),
            contention=round(waiting / (on_cpu + waiting), 4) if on_cpu + waiting > 0 else 0.0,
        )

    def note_shells(self, pids: set[int]) -> None:
        """Remember wrapper shells so they count neither as master nor as workers."""
        self._shells |= pids


def _master_pid(processes: tuple[ProcessSample, ...]) -> int:
    """The first process, root downwards, that is not a wrapping shell."""
    by_parent: dict[int, list[ProcessSample]] = {}
    for p in processes:
        by_parent.setdefault(p.ppid, []).append(p)
    current = processes[0]
    while current.name in SHELLS:
        children = by_parent.get(current.pid, [])
        if not children:
            break
        current = children[0]
    return current.pid


def sample_tree_into(accumulator: TreeAccumulator, sample: TreeSample | None) -> bool:
    """Add ``sample`` (if any) and note its shells; False when the tree has gone."""
    if sample is None or not sample.processes:
        return False
    accumulator.note_shells({p.pid for p in sample.processes if p.name in SHELLS})
    accumulator.add(sample)
    return True


class LocalTreeSampler:
    """Samples a process tree on this machine with psutil."""

    def __init__(self, pid: int):
        import psutil

        self._psutil = psutil
        try:
            self._root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            self._root = None

    def sample(self) -> TreeSample | None:
        """The tree now, or None when the root has gone."""
        psutil = self._psutil
        if self._root is None:
            return None
        try:
            tree = [self._root] + self._root.children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        now = time.monotonic()
        processes = []
        for proc in tree:
            try:
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    memory = proc.memory_info()
                    try:
                        io = proc.io_counters()
                        read, write = io.read_bytes, io.write_bytes
                    except (psutil.AccessDenied, AttributeError):
                        read = write = 0
                    processes.append(
                        ProcessSample(
                            pid=proc.pid,
                            ppid=proc.ppid(),
                            name=proc.name(),
                            cpu_user_s=cpu.user,
                            cpu_system_s=cpu.system,
                            rss_mb=memory.rss / 1e6,
                            threads=proc.num_threads(),
                            read_bytes=read,
                            write_bytes=write,
                            **_schedstat(proc.pid),
                        )
                    )
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return TreeSample(time_s=now, processes=tuple(processes)) if processes else None


def _schedstat(pid: int) -> dict[str, float]:
    """On-CPU and run-queue time of every thread of ``pid`` (Linux; zeros elsewhere)."""
    on_cpu = delay = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                fields = handle.read().split()
            on_cpu += int(fields[0])
            delay += int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    return {"sched_cpu_s": on_cpu / 1e9, "run_delay_s": delay / 1e9}


# One pass over /proc: find the tree below $R through the ppid field of /proc/*/stat, then print
# each member's stat line (after the ')' of its name) and its read/write bytes.
_PROC_SCRIPT = r"""R=%d
for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null && echo "${l%%%% (*} ${l##*) }"; done |
awk -v r="$R" '{p[$1]=$3} END{t[r]=1; c=1; while(c){c=0; for(k in p) if(!(k in t) && (p[k] in t)){t[k]=1; c=1}} for(k in t) print k}' |
while read -r p; do
  read -r l < /proc/$p/stat 2>/dev/null || continue
  n=${l#*(}; n=${n%%%%)*}
  rb=$(awk '/^read_bytes/{print $2}' /proc/$p/io 2>/dev/null); wb=$(awk '/^write_bytes/{print $2}' /proc/$p/io 2>/dev/null)
  ss=$(cat /proc/$p/task/*/schedstat 2>/dev/null | awk '{c+=$1; d+=$2} END{printf "%%.0f %%.0f", c, d}')
  echo "P $p ${rb:-0} ${wb:-0} ${ss:-0 0} $n|${l##*) }"
done
"""


def parse_proc_lines(text: str, root: int, page_size: int, clock_ticks: int, now: float) -> TreeSample | None:
    """Parse the output of the /proc script into a TreeSample (root first)."""
    processes = []
    for line in text.splitlines():
        if not line.startswith("P "):
            continue
        head, _, stat = line.partition("|")
        parts = head.split(" ", 6)
        if len(parts) < 7:
            continue
        fields = stat.split()
        # After the name: state(3) ppid(4) ... utime(14) stime(15) ... threads(20) ... rss(24)
        try:
            pid, read, write = int(parts[1]), int(parts[2]), int(parts[3])
            on_cpu, delay = int(parts[4]), int(parts[5])
            name = parts[6]
            ppid = int(fields[1])
            utime, stime = int(fields[11]), int(fields[12])
            threads = int(fields[17])
            rss_pages = int(fields[21])
        except (ValueError, IndexError):
            continue
        processes.append(
            ProcessSample(
                pid=pid,
                ppid=ppid,
                name=name,
                cpu_user_s=utime / clock_ticks,
                cpu_system_s=stime / clock_ticks,
                rss_mb=rss_pages * page_size / 1e6,
                threads=threads,
                read_bytes=read,
                write_bytes=write,
                sched_cpu_s=on_cpu / 1e9,
                run_delay_s=delay / 1e9,
            )
        )
    if not any(p.pid == root for p in processes):
        return None
    processes.sort(key=lambda p: (p.pid != root, p.pid))
    return TreeSample(time_s=now, processes=tuple(processes))


class ProcTreeSampler:
    """Samples a process tree on any Linux host by reading /proc through ``host.run``."""

    def __init__(self, host: Host, pid: int, *, page_size: int = 4096, clock_ticks: int = 100):
        self._host = host
        self._pid = pid
        self._page_size = page_size
        self._clock_ticks = clock_ticks

    def sample(self) -> TreeSample | None:
        """The tree now, or None when the root has gone."""
        lines: list[str] = []
        self._host.run(_PROC_SCRIPT % self._pid, timeout=10, on_stdout=lines.append)
        return parse_proc_lines("\n".join(lines), self._pid, self._page_size, self._clock_ticks, time.monotonic())
