"""How a fleet of EC2 instances maps onto the profile model's workers.

The model is fitted on the desktop, where each worker ran on a core of its own. On EC2 the app
is started with one worker per vCPU (``D2C_WORKER_COUNT`` is the fleet's total vCPUs), so a fleet
of ``count`` instances offers ``count * workers_per_instance * speed`` effective desktop-core
workers. The assumptions, shown by ``d2c predict``:

* x86 families with SMT run two vCPUs per physical core; with every vCPU busy a vCPU yields
  ``SMT_YIELD`` of a full core (two hyper-threads together give about 1.2 cores on
  compute-bound code). Graviton (arm64) vCPUs are whole cores, and hpc6a runs with SMT off.
* Per-core speed is ``family speed / host_speed``: both on one scale where a c5 core (Intel Xeon
  Platinum 8275CL at 3.6 GHz turbo) is 1.0. The profiling host's figure comes from the
  profiler's single-core speed score. The family speed is ``FAMILY_CORE_SPEED[family]`` (relative
  single-thread performance of AWS's published processor generations) for the families there;
  every other family's comes from its processor facts, the fields ``describe_instance_types``
  returns in ProcessorInfo (manufacturer, supported architectures, sustained clock speed in GHz;
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ProcessorInfo.html) plus the
  processor generation AWS names for the family (instance type specifications,
  https://docs.aws.amazon.com/ec2/latest/instancetypes/co.md, .../gp.md, .../mo.md and previous
  generations .../pg.md): ``speed = PER_CLOCK[generation] × sustained GHz / C5_GHZ``. The
  per-clock factors (work per cycle of each core generation relative to the c5's Cascade Lake)
  are rounded from published single-thread comparisons: an approximation (±15 %) that beats
  pretending every family is a c5. Facts read from the live API can be passed in
  (``processor=``); ``PROCESSOR_FACTS`` holds AWS's documented figures for the families d2c
  knows. A family with neither (or a burstable family without a baseline) has **no speed
  basis**: its capacity is 0 workers, so plans leave it out, and ``speed_basis`` says why; a
  caller may bring it back with an explicit ``assume_speed``.
* Burstable types (t2, t3, t3a, t4g) launched in ``standard`` credit mode run at their
  per-size baseline once their credits run out, so for long runs each vCPU counts as its
  baseline fraction (``BURSTABLE_BASELINE``: AWS's baseline utilization per vCPU, e.g. 5 % for
  t3.nano, 40 % for t3.xlarge, from the credit table at
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/burstable-credits-baseline-concepts.html,
  baseline = credits earned per hour / vCPUs / 60). In ``unlimited`` mode they run at full speed
  like any other type (and are billed surplus credits, see planner.billing).
"""

from __future__ import annotations

from dataclasses import dataclass

SMT_YIELD = 0.6
"""Fraction of a physical core one busy hyper-thread delivers when its sibling is busy too."""

FAMILY_CORE_SPEED = {
    "c5": 1.00, "c5n": 1.00, "m5": 0.95, "r5": 0.95,
    "c6i": 1.12, "m6i": 1.10, "r6i": 1.10,
    "c6a": 1.08, "m6a": 1.06, "hpc6a": 1.06,
    "c7i": 1.25, "m7i": 1.22, "r7i": 1.22,
    "c7g": 1.15, "m7g": 1.12,
    "t3": 0.95,
}
"""Single-core speed per family relative to a c5 core (1.0)."""

C5_GHZ = 3.6
"""The c5 core's clock, the 1.0 of the scale."""

PER_CLOCK = {
    "haswell": 0.85, "broadwell": 0.88, "skylake": 1.0, "cascade lake": 1.0, "ice lake": 1.12,
    "sapphire rapids": 1.2, "zen": 0.85, "zen 2": 0.98, "zen 3": 1.08, "zen 4": 1.2,
    "graviton": 0.55, "graviton2": 0.9, "graviton3": 1.15, "graviton4": 1.3,
}
"""Work per clock cycle of each core generation relative to Cascade Lake (the c5)."""


@dataclass(frozen=True)
class ProcessorFacts:
    """A family's processor as ProcessorInfo and the instance type specifications describe it."""

    manufacturer: str
    architecture: str
    sustained_ghz: float
    generation: str
    """A key of PER_CLOCK."""


def _facts(manufacturer: str, architecture: str, ghz: float, generation: str) -> ProcessorFacts:
    return ProcessorFacts(manufacturer, architecture, ghz, generation)


PROCESSOR_FACTS = {
    # Previous generation (https://docs.aws.amazon.com/ec2/latest/instancetypes/pg.md).
    "c4": _facts("Intel", "x86_64", 2.9, "haswell"),      # Xeon E5-2666 v3
    "m4": _facts("Intel", "x86_64", 2.3, "broadwell"),    # Xeon E5-2686 v4
    "r4": _facts("Intel", "x86_64", 2.3, "broadwell"),    # Xeon E5-2686 v4
    "a1": _facts("AWS", "arm64", 2.3, "graviton"),        # first AWS Graviton
    # Current generation (co.md, gp.md, mo.md).
    "c5a": _facts("AMD", "x86_64", 3.3, "zen 2"),         # 2nd generation EPYC 7002
    "m5a": _facts("AMD", "x86_64", 2.5, "zen"),           # EPYC 7571
    "r5a": _facts("AMD", "x86_64", 2.5, "zen"),           # EPYC 7571
    "m5zn": _facts("Intel", "x86_64", 4.5, "cascade lake"),
    "r5b": _facts("Intel", "x86_64", 3.1, "cascade lake"),
    "c6g": _facts("AWS", "arm64", 2.5, "graviton2"),
    "m6g": _facts("AWS", "arm64", 2.5, "graviton2"),
    "r6g": _facts("AWS", "arm64", 2.5, "graviton2"),
    "r6a": _facts("AMD", "x86_64", 3.6, "zen 3"),
    "c6in": _facts("Intel", "x86_64", 3.5, "ice lake"),
    "r7g": _facts("AWS", "arm64", 2.6, "graviton3"),
    "c7a": _facts("AMD", "x86_64", 3.7, "zen 4"),
    "m7a": _facts("AMD", "x86_64", 3.7, "zen 4"),
    "r7a": _facts("AMD", "x86_64", 3.7, "zen 4"),
    "c8g": _facts("AWS", "arm64", 2.8, "graviton4"),
    "m8g": _facts("AWS", "arm64", 2.8, "graviton4"),
    "r8g": _facts("AWS", "arm64", 2.8, "graviton4"),
    # Burstable: their sustained speed is the baseline (BURSTABLE_BASELINE).
    "t2": _facts("Intel", "x86_64", 3.3, "broadwell"),
    "t3a": _facts("AMD", "x86_64", 2.5, "zen"),
    "t4g": _facts("AWS", "arm64", 2.5, "graviton2"),
}
"""Processor facts of the families outside FAMILY_CORE_SPEED, from AWS's specifications."""

BURSTABLE_FAMILIES = ("t1", "t2", "t3", "t3a", "t4g")

_VARIANT_SUFFIXES = ("-flex", "dn", "en", "id", "d", "n", "e", "b", "z")
"""Letters after a family's processor letter that change storage or network, not the cores
(``c5d`` has the c5's processor, ``m6id`` the m6i's)."""


@dataclass(frozen=True)
class FamilySpeed:
    """A family's per-core speed (c5 core = 1.0) and what it rests on."""

    speed: float
    basis: str


def base_family(family: str) -> str:
    """The family whose processor ``family`` shares (``c5d`` -> ``c5``), or ``family`` itself."""
    for suffix in _VARIANT_SUFFIXES:
        if family.endswith(suffix) and len(family) > len(suffix) + 1:
            shorter = family[: -len(suffix)]
            if shorter in FAMILY_CORE_SPEED or shorter in PROCESSOR_FACTS:
                return shorter
    return family


def family_speed(family: str, processor: ProcessorFacts | None = None) -> FamilySpeed | None:
    """The per-core speed of ``family`` on the c5 = 1.0 scale, or None when nothing supports one."""
    base = base_family(family)
    if base in FAMILY_CORE_SPEED:
        return FamilySpeed(FAMILY_CORE_SPEED[base], f"family table ({base})")
    facts = processor or PROCESSOR_FACTS.get(base)
    if facts is None or facts.generation not in PER_CLOCK or not facts.sustained_ghz > 0:
        return None
    speed = PER_CLOCK[facts.generation] * facts.sustained_ghz / C5_GHZ
    return FamilySpeed(round(speed, 3), f"processor facts ({facts.manufacturer} {facts.generation}, {facts.sustained_ghz:g} GHz sustained)")


def speed_basis(family: str, processor: ProcessorFacts | None = None) -> str:
    """What a family's speed rests on, or why it has none (for notes in plans and predict)."""
    known = family_speed(family, processor)
    base = base_family(family)
    if known is None:
        return f"{family}: no speed basis (not in the family table and no processor facts); left out of plans"
    if base in BURSTABLE_FAMILIES and base not in BURSTABLE_BASELINE:
        return f"{family}: burstable without a known baseline; left out of plans"
    return f"{family}: {known.basis}"

_T3_SIZES = {"nano": 0.05, "micro": 0.10, "small": 0.20, "medium": 0.20, "large": 0.30, "xlarge": 0.40, "2xlarge": 0.40}
BURSTABLE_BASELINE = {
    "t3": _T3_SIZES,
    "t3a": _T3_SIZES,
    "t4g": _T3_SIZES,
    "t2": {"nano": 0.05, "micro": 0.10, "small": 0.20, "medium": 0.20, "large": 0.30, "xlarge": 0.225, "2xlarge": 0.17},
}
"""Baseline utilization per vCPU by burstable family and size (AWS's credit table, cited above)."""


def burstable_baseline(instance_type: str) -> float | None:
    """Baseline fraction per vCPU of a burstable type or family (None for other families).

    Given a family alone, or a size the table lacks, the family's smallest baseline applies, so
    a burstable host is never counted faster than AWS runs it.
    """
    family, _, size = instance_type.partition(".")
    table = BURSTABLE_BASELINE.get(family)
    if table is None:
        return None
    return table.get(size, min(table.values()))


_SMT_OFF_FAMILIES = ("hpc6a",)


@dataclass(frozen=True)
class Capacity:
    """What one instance contributes: workers started on it and their speed in desktop cores."""

    workers_per_instance: int
    speed: float
    """Effective desktop-core workers per worker started (per-vCPU speed); 0 without a basis."""
    basis: str = ""
    """What the family's speed rests on, or why it has none (see speed_basis)."""

    @property
    def known(self) -> bool:
        """False when the family has no speed basis (the instance is worth 0 workers)."""
        return self.speed > 0

    @property
    def effective_workers(self) -> float:
        """Desktop-core workers one instance is worth."""
        return self.workers_per_instance * self.speed


def instance_capacity(
    family: str,
    arch: str,
    vcpus: int,
    host_speed: float = 1.0,
    *,
    processor: ProcessorFacts | None = None,
    assume_speed: float | None = None,
    cpu_credits: str = "standard",
) -> Capacity:
    """Capacity of one instance of ``family`` (or a full type name, e.g. ``t3.micro``, which burstable
    types need for their per-size baseline) with ``vcpus`` vCPUs, for a profile whose host
    single-core speed is ``host_speed`` on the c5 = 1.0 scale. ``cpu_credits`` is the credit mode
    a burstable type is launched in. A family without a speed basis gets speed 0 unless the caller
    gives ``assume_speed`` (c5 = 1.0) explicitly."""
    baseline = burstable_baseline(family)
    family = family.split(".", 1)[0]
    base = base_family(family)
    basis = speed_basis(family, processor)
    known = family_speed(family, processor)
    burstable_unknown = base in BURSTABLE_FAMILIES and base not in BURSTABLE_BASELINE
    if assume_speed is not None:
        family_figure, basis = assume_speed, f"{family}: assumed {assume_speed:g} x c5 core (given)"
    elif known is None or burstable_unknown:
        return Capacity(workers_per_instance=vcpus, speed=0.0, basis=basis)
    else:
        family_figure = known.speed
    core_speed = family_figure / max(host_speed, 1e-9)
    if baseline is not None and cpu_credits == "standard":
        # Throttled vCPUs rarely contend for their shared core, so the baseline alone applies.
        return Capacity(workers_per_instance=vcpus, speed=core_speed * baseline, basis=basis)
    smt = arch == "x86_64" and base not in _SMT_OFF_FAMILIES and vcpus >= 2
    per_vcpu = core_speed * (SMT_YIELD if smt else 1.0)
    return Capacity(workers_per_instance=vcpus, speed=per_vcpu, basis=basis)


def assumptions_text() -> str:
    """One line that states the mapping, for ``d2c predict`` and plan explanations."""
    return (
        f"one worker per vCPU; an x86 hyper-thread = {SMT_YIELD:g} core when all are busy, arm64 vCPU = 1 core; "
        "per-core speed from the family table or the family's processor facts, relative to the profiling host's score (c5 core = 1.0)"
    )
