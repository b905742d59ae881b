"""The deployment descriptor ``d2c.yaml``: its typed model, loading, and validation.

A descriptor says what the app is (roles, each with an image and a command), what goes in and
comes out, how to run it at reduced scale for profiling, and where the desktop VMs are reachable.
Every problem found is reported as one line naming the file, the field and the fix, raised as
:class:`d2c.errors.UsageError` (exit 2). The format is documented in README.md; an example::

    name: montecarlo
    workdir: d2c-work            # remote work folder, relative to the login user's home
    roles:
      - name: master
        image: .                 # a folder, or .ova/.ovf/.vbox/.vdi/.vmdk/.vhd/.raw/.img
        command: python3 montecarlo.py --scale 1.0 --workers $D2C_WORKER_COUNT --out out/result.json
        count: 1
    inputs:
      - {local: data/params.json, remote: params.json}
    outputs:
      - {remote: out, local: results}
    profile:
      command: python3 montecarlo.py --scale {scale} --workers {workers} --out out/result.json
      scales: [0.02, 0.05, 0.1]
      workers: [1, 2]
      full_scale: 1.0
    desktop: local               # or {host: ssh://user@host:2222, key: ~/.ssh/id_ed25519}
    env: {OMP_NUM_THREADS: "1"}  # variables the app's commands see, on every host
    exclude: ["*.png", "plans.json"]   # not uploaded (gitignore syntax, besides .d2cignore)
    balance: dynamic             # how the app shares work: static (default) or dynamic
    base_image: ubuntu-24.04     # what folder apps boot: ubuntu-24.04 (default), ubuntu-22.04, debian-12, ami-...
    placement: none              # EC2 placement group: cluster, spread or none (default: see below)

Names that reach a remote shell (the work folder, remote paths, login users) are held to a safe
alphabet: a newline, ``;``, ``$`` or a quote there would end the quoted word d2c builds around
them, or turn one path into two commands, on a host that runs as the user.

``balance``: ``static`` (the default) for a fixed split of the work among ranks, as most MPI codes
do, where the slowest rank sets the pace; ``dynamic`` for a work queue or process pool, where
faster workers take more of the work. The planner prices fleets accordingly.

``placement``: by default ``cluster`` when the master drives its workers (a non-master role with
no ``command`` and a count above 0, as MPI ranks started by ``mpirun``), ``none`` otherwise.

Roles: one master; the role whose hosts run the workers the profile measured (``profiled:
true``; unmarked, the only non-master role, or the master alone); any others are *service roles*
(an I/O server, a parameter server), which run their own ``command``, get no MPI slots and are
sized by ``memory_mb`` (default ``SERVICE_MEMORY_MB``), at their least count.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from d2c.errors import UsageError

IMAGE_SUFFIXES = (".ova", ".ovf", ".vbox", ".vdi", ".vmdk", ".vhd", ".raw", ".img")
MAX_COUNT = 1000
DEFAULT_WORKDIR = "d2c-work"
DEFAULT_USER = "ubuntu"

_TOP_KEYS = ("name", "workdir", "roles", "inputs", "outputs", "profile", "desktop", "done_file", "env", "exclude", "balance",
             "base_image", "placement")
BALANCES = ("static", "dynamic")
DEFAULT_BALANCE = "static"
BALANCE_MEANING = {
    "static": "static: the slowest rank sets the pace, so plans keep every host in one family",
    "dynamic": "dynamic: a work queue, so plans may mix families, priced at their summed speed",
}
"""What each ``balance`` means for plans, as ``check`` and ``recommend`` say it."""
BASE_IMAGES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12")
"""The stock images a folder app may boot, besides an AMI id (the first is the default)."""
_AMI_RE = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
PLACEMENTS = ("cluster", "spread", "none")
_ROLE_KEYS = ("name", "image", "vm", "command", "count", "min", "max", "user", "master", "profiled", "memory_mb")
SERVICE_MEMORY_MB = 1024.0
"""A service role's memory need per host when its ``memory_mb`` is not given."""
_TRANSFER_KEYS = ("local", "remote")
_PROFILE_KEYS = ("command", "scales", "workers", "full_scale", "repeats", "timeout")
_DESKTOP_KEYS = ("host", "key")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
"""A POSIX login name as useradd accepts it by default (lower case, digits, '_', '-')."""
_REMOTE_PATH_RE = re.compile(r"^[A-Za-z0-9_./~+@%=:,-]+$")
"""Characters a remote path may hold: no space, quote, newline, ';', '$', '`', '|', '&', '*'."""
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_RESERVED_ENV_PREFIX = "D2C_"


@dataclass(frozen=True)
class Role:
    """One kind of host in the app: its image, the command it runs, and how many of it."""

    name: str
    image: Path
    command: str | None
    count: int | None
    """A fixed count, or None for ``auto`` (the planner decides within min..max)."""
    min_count: int
    max_count: int
    user: str
    master: bool
    vm: str | None = None
    """The VM of a multi-VM appliance (.ova/.ovf) this role boots, by its name there."""
    profiled: bool = False
    """Its hosts run the workers the profile measured (the one working role; set on load)."""
    memory_mb: float | None = None
    """A service role's memory need per host, MB (its processes' peak; None: ``SERVICE_MEMORY_MB``)."""

    @property
    def image_is_folder(self) -> bool:
        """True for an app that is not in a VM: its folder is copied as it is."""
        return self.image.is_dir()


@dataclass(frozen=True)
class Transfer:
    """A file or folder copied between the desktop and the remote work folder."""

    local: Path
    remote: str


@dataclass(frozen=True)
class ProfileSpec:
    """How to run the app at reduced scale: a command template and the points allowed."""

    command: str
    scales: tuple[float, ...]
    workers: tuple[int, ...]
    full_scale: float
    repeats: int = 2
    timeout_s: float | None = None

    def render(self, scale: float, workers: int) -> str:
        """The command for one profiling point."""
        return self.command.replace("{scale}", f"{scale:g}").replace("{workers}", str(workers))


@dataclass(frozen=True)
class Desktop:
    """Where the desktop VMs (or the app itself) can be reached for profiling."""

    kind: str
    """``local`` or ``ssh``."""
    user: str | None = None
    hostname: str | None = None
    port: int = 22
    key: Path | None = None

    @property
    def label(self) -> str:
        """How the host is named in messages."""
        return "local" if self.kind == "local" else f"ssh://{self.user}@{self.hostname}:{self.port}"


@dataclass(frozen=True)
class Descriptor:
    """A loaded, validated ``d2c.yaml``."""

    path: Path
    name: str
    workdir: str
    roles: tuple[Role, ...]
    inputs: tuple[Transfer, ...] = ()
    outputs: tuple[Transfer, ...] = ()
    profile: ProfileSpec | None = None
    desktop: Desktop = field(default_factory=lambda: Desktop(kind="local"))
    done_file: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    """``env:`` as (name, value) pairs in file order: exported for every role command."""
    exclude: tuple[str, ...] = ()
    """Files of app folders not to upload, in gitignore syntax (besides each folder's ``.d2cignore``)."""
    balance: str = DEFAULT_BALANCE
    """``static`` (the slowest rank sets the pace) or ``dynamic`` (a work queue)."""
    base_image: str = BASE_IMAGES[0]
    """What folder apps boot: one of ``BASE_IMAGES`` or an AMI id."""
    placement: str = "none"
    """``cluster``, ``spread`` or ``none``: the EC2 placement group strategy of the run's hosts."""

    @property
    def project_dir(self) -> Path:
        """The folder holding the descriptor; relative local paths resolve against it."""
        return self.path.parent

    @property
    def master(self) -> Role:
        """The role that runs the app's main program."""
        return next(role for role in self.roles if role.master)

    @property
    def working(self) -> Role:
        """The role whose hosts run the workers the profile measured: the one marked ``profiled``,
        else the only non-master role, else the master."""
        marked = [r for r in self.roles if r.profiled]
        others = [r for r in self.roles if not r.master]
        return marked[0] if marked else others[0] if others else self.master

    @property
    def services(self) -> tuple[Role, ...]:
        """Service roles: neither the master nor the profiled workers (an I/O or parameter server).
        Their hosts run their own command and no ranks, so their speed sets no pace."""
        working = self.working
        return tuple(r for r in self.roles if not r.master and r is not working)

    def role(self, name: str) -> Role:
        """The role called ``name``."""
        for role in self.roles:
            if role.name == name:
                return role
        raise UsageError(f"{self.path}: roles: no role named {name!r} (roles: {', '.join(r.name for r in self.roles)})")


class _Checker:
    """Collects the location of each value so that every error names file and field."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str) -> UsageError:
        return UsageError(f"{self.path}: {where}: {problem}")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where or "(top level)", f"must be a mapping of keys ({', '.join(allowed)}), got {_kind(value)}")
        for key in value:
            if key not in allowed:
                near = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
                hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(allowed)}"
                raise self.fail(f"{where}.{key}" if where else str(key), f"unknown key{hint}")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"must be a non-empty string, got {_kind(value)}")
        return value.strip()

    def integer(self, value: Any, where: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"must be a whole number, got {_kind(value)}")
        if not lo <= value <= hi:
            raise self.fail(where, f"must be between {lo} and {hi}, got {value}")
        return value

    def positive(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"must be a number, got {_kind(value)}")
        if not value > 0 or value != value or value == float("inf"):
            raise self.fail(where, f"must be a positive finite number, got {value}")
        return float(value)

    def sequence(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list, got {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _strict_loader():
    """A SafeLoader that refuses a key given twice in one mapping.

    Plain YAML keeps the last of two equal keys silently, which would drop, say, a whole
    ``roles`` list written earlier in the file.
    """
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, (str, int, float, bool)):
                    continue
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice in the same mapping", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def load_descriptor(path: Path | str | None = None) -> Descriptor:
    """Load and validate a descriptor; ``path`` defaults to ``./d2c.yaml``.

    Raises UsageError with one line naming file, field and fix for any problem.
    """
    import yaml

    path = Path(path) if path else Path.cwd() / "d2c.yaml"
    if path.is_dir():
        path = path / "d2c.yaml"
    if not path.is_file():
        raise UsageError(f"{path}: no such descriptor; run 'd2c init' to create one")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file; a descriptor is YAML") from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to be a descriptor; fix the YAML structure") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UsageError(f"{path}: {where}: {problem}; fix the YAML syntax") from None
    return parse_descriptor(raw, path.resolve())


def parse_descriptor(raw: Any, path: Path) -> Descriptor:
    """Validate the parsed YAML ``raw`` of the descriptor at ``path`` into a Descriptor."""
    check = _Checker(path)
    if raw is None:
        raise check.fail("(top level)", "the file is empty; run 'd2c init' to scaffold one")
    top = check.mapping(raw, "", _TOP_KEYS)
    for required in ("name", "roles"):
        if required not in top:
            raise check.fail(required, "missing; every descriptor needs 'name' and 'roles'")
    name = check.string(top["name"], "name")
    if not _NAME_RE.match(name):
        raise check.fail("name", f"{name!r} must start with a letter or digit and hold only letters, digits, '.', '_', '-'")
    workdir = _workdir(check, top.get("workdir", DEFAULT_WORKDIR))
    base = path.parent
    roles = _roles(check, top["roles"], base)
    inputs = tuple(
        _transfer(check, item, f"inputs[{i}]", base, workdir, must_exist=True)
        for i, item in enumerate(check.sequence(top.get("inputs", []) or [], "inputs"))
    )
    outputs = tuple(
        _transfer(check, item, f"outputs[{i}]", base, workdir, must_exist=False)
        for i, item in enumerate(check.sequence(top.get("outputs", []) or [], "outputs"))
    )
    profile = _profile(check, top["profile"]) if top.get("profile") is not None else None
    desktop = _desktop(check, top.get("desktop", "local"), base)
    done_file = None
    if top.get("done_file") is not None:
        done_file = _remote_path(check, top["done_file"], "done_file", workdir)
    env = _env(check, top.get("env"))
    exclude = _exclude(check, top.get("exclude", []) or [])
    balance = check.string(top.get("balance", DEFAULT_BALANCE), "balance")
    if balance not in BALANCES:
        raise check.fail("balance", f"{balance!r} must be 'static' (a fixed split among ranks, e.g. MPI) or 'dynamic' (a work queue)")
    base_image = check.string(top.get("base_image", BASE_IMAGES[0]), "base_image")
    if base_image not in BASE_IMAGES and not _AMI_RE.match(base_image):
        raise check.fail("base_image", f"{base_image!r} must be one of {', '.join(BASE_IMAGES)} or an AMI id like ami-0123456789abcdef0")
    placement = check.string(top.get("placement", default_placement(roles)), "placement")
    if placement not in PLACEMENTS:
        raise check.fail("placement", f"{placement!r} must be 'cluster' (one rack, lowest latency, for MPI), 'spread' (distinct hardware) or 'none'")
    return Descriptor(
        path=path,
        name=name,
        workdir=workdir,
        roles=roles,
        inputs=inputs,
        outputs=outputs,
        profile=profile,
        desktop=desktop,
        done_file=done_file,
        env=env,
        exclude=exclude,
        balance=balance,
        base_image=base_image,
        placement=placement,
    )


def default_placement(roles: tuple[Role, ...]) -> str:
    """``cluster`` when the master drives its workers (a worker role with no command of its own and
    hosts to run on, as MPI's ranks started by ``mpirun``); ``none`` otherwise (workers that run
    their own command talk to the master rarely enough that rack locality buys nothing)."""
    driven = any(role.profiled and not role.master and role.command is None and (role.count is None or role.count > 0) for role in roles)
    return "cluster" if driven else "none"


def _env(check: _Checker, value: Any) -> tuple[tuple[str, str], ...]:
    """``env:``: a mapping of variable names to strings or numbers (D2C_* belongs to d2c)."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise check.fail("env", f"must be a mapping of variable names to values, got {_kind(value)}")
    pairs = []
    for name, raw in value.items():
        where = f"env.{name}"
        if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
            raise check.fail(where, "is not a variable name; use letters, digits and '_', not starting with a digit")
        if name.startswith(_RESERVED_ENV_PREFIX):
            raise check.fail(where, f"names starting with {_RESERVED_ENV_PREFIX} are set by d2c itself; rename it")
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise check.fail(where, f"must be a string or a number, got {_kind(raw)}")
        text = str(raw)
        if "\0" in text:
            raise check.fail(where, "holds a NUL character, which no environment variable can hold")
        pairs.append((name, text))
    return tuple(pairs)


def _safe_remote(check: _Checker, text: str, where: str) -> str:
    """``text`` when every character is in the safe alphabet of remote paths, else a UsageError."""
    if not _REMOTE_PATH_RE.match(text):
        bad = next(c for c in text if not _REMOTE_PATH_RE.match(c))
        raise check.fail(where, f"{text!r} holds {bad!r}; remote paths may hold only letters, digits and . _ - / ~ + @ % = : ,")
    return text


def _exclude(check: _Checker, value: Any) -> tuple[str, ...]:
    """Upload ignores in gitignore syntax (https://git-scm.com/docs/gitignore#_pattern_format)."""
    import pathspec

    patterns = []
    for i, item in enumerate(check.sequence(value, "exclude")):
        pattern = check.string(item, f"exclude[{i}]")
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except ValueError:
            raise check.fail(f"exclude[{i}]", f"{pattern!r} is not a gitignore pattern; write e.g. '*.png', 'results/' or '!keep.dat'") from None
        patterns.append(pattern)
    return tuple(patterns)


def _workdir(check: _Checker, value: Any) -> str:
    workdir = _safe_remote(check, check.string(value, "workdir"), "workdir")
    normal = posixpath.normpath(workdir)
    if normal in ("/", ".") or normal.startswith(".."):
        raise check.fail("workdir", f"{workdir!r} must be a folder of its own, e.g. 'd2c-work' or '/opt/app/run'")
    return normal


def _roles(check: _Checker, value: Any, base: Path) -> tuple[Role, ...]:
    items = check.sequence(value, "roles")
    if not items:
        raise check.fail("roles", "must list at least one role, e.g. '- {name: master, image: ., command: ./run.sh}'")
    roles: list[Role] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"roles[{i}]"
        spec = check.mapping(item, where, _ROLE_KEYS)
        if "name" not in spec:
            raise check.fail(f"{where}.name", "missing; give each role a name such as 'master' or 'worker'")
        name = check.string(spec["name"], f"{where}.name")
        if not _NAME_RE.match(name):
            raise check.fail(f"{where}.name", f"{name!r} must hold only letters, digits, '.', '_', '-'")
        if name in seen:
            raise check.fail(f"{where}.name", f"duplicate role name {name!r} (also roles[{seen[name]}]); role names must be unique")
        seen[name] = i
        roles.append(_role(check, spec, where, name, base))
    masters = [role for role in roles if role.master]
    if len(masters) > 1:
        raise check.fail("roles", f"more than one role says 'master: true' ({', '.join(r.name for r in masters)}); mark exactly one")
    if not masters:
        by_name = [r for r in roles if r.name == "master"]
        chosen = by_name[0] if by_name else roles[0]
        roles = [replace(r, master=r is chosen) for r in roles]
        masters = [next(r for r in roles if r.master)]
    master = masters[0]
    if master.command is None:
        index = next(i for i, r in enumerate(roles) if r.master)
        raise check.fail(f"roles[{index}].command", f"role {master.name!r} runs the app but has no command; add 'command: <how you start the app>'")
    index = next(i for i, r in enumerate(roles) if r.master)
    if master.count != 1 and len(roles) > 1:
        shown = "auto" if master.count is None else master.count
        raise check.fail(f"roles[{index}].count", f"the master role {master.name!r} must have count 1 when other roles exist, got {shown}")
    if master.count == 0 or master.max_count == 0 or (master.count is None and master.min_count == 0 and len(roles) == 1):
        raise check.fail(f"roles[{index}].count", f"the master role {master.name!r} runs the app, so it needs at least one instance; set count: 1")
    return _mark_profiled(check, roles)


def _mark_profiled(check: _Checker, roles: list[Role]) -> tuple[Role, ...]:
    """Find the one role whose hosts run the profiled workers; the other non-master roles are services.

    Marked with ``profiled: true``; unmarked, it is the only non-master role, or the master when
    there is none. Several non-master roles need the mark, since any of them could be it.
    """
    marked = [i for i, r in enumerate(roles) if r.profiled]
    if len(marked) > 1:
        raise check.fail("roles", f"more than one role says 'profiled: true' ({', '.join(roles[i].name for i in marked)}); mark exactly one")
    others = [i for i, r in enumerate(roles) if not r.master]
    if marked:
        working = marked[0]
    elif len(others) <= 1:
        working = others[0] if others else next(i for i, r in enumerate(roles) if r.master)
    else:
        names = ", ".join(roles[i].name for i in others)
        raise check.fail("roles", (
            f"{names} could each run the workers the profile measured; mark that role 'profiled: true' "
            "(the others become service roles: their own command, no ranks, sized by 'memory_mb')"))
    for i, role in enumerate(roles):
        if role.memory_mb is not None and (i == working or role.master):
            raise check.fail(f"roles[{i}].memory_mb", f"role {role.name!r} is sized from the profile; 'memory_mb' is for service roles only, remove it")
        if i != working and not role.master and role.command is None:
            raise check.fail(f"roles[{i}].command", (
                f"service role {role.name!r} runs no ranks, so it needs a command of its own "
                f"(or mark it 'profiled: true' if it runs the profiled workers)"))
    return tuple(replace(r, profiled=i == working) for i, r in enumerate(roles))


def _role(check: _Checker, spec: dict[str, Any], where: str, name: str, base: Path) -> Role:
    if "image" not in spec:
        raise check.fail(f"{where}.image", f"missing; give role {name!r} a VM image ({', '.join(IMAGE_SUFFIXES)}) or the app's folder")
    image_text = check.string(spec["image"], f"{where}.image")
    image = (base / Path(image_text).expanduser()).resolve()
    if not image.exists():
        raise check.fail(f"{where}.image", f"{image} does not exist; give the path of the VM image or app folder")
    if image.is_file() and image.suffix.lower() not in IMAGE_SUFFIXES:
        raise check.fail(f"{where}.image", f"{image.name} is not a VM image; use one of {', '.join(IMAGE_SUFFIXES)} or a folder")
    command = None
    if spec.get("command") is not None:
        command = check.string(spec["command"], f"{where}.command")
    min_count = check.integer(spec.get("min", 1), f"{where}.min", 0, MAX_COUNT)
    max_count = check.integer(spec.get("max", MAX_COUNT), f"{where}.max", 1, MAX_COUNT)
    if min_count > max_count:
        raise check.fail(f"{where}.min", f"min {min_count} is above max {max_count}; lower min or raise max")
    raw_count = spec.get("count", 1)
    if raw_count == "auto":
        count = None
    else:
        if isinstance(raw_count, str):
            raise check.fail(f"{where}.count", f"must be a whole number or 'auto', got {raw_count!r}")
        count = check.integer(raw_count, f"{where}.count", 0, MAX_COUNT)
        if not min_count <= count <= max_count:
            raise check.fail(f"{where}.count", f"{count} is outside min {min_count} .. max {max_count}; change count or the limits")
    user = check.string(spec.get("user", DEFAULT_USER), f"{where}.user")
    if not _USER_RE.match(user):
        raise check.fail(f"{where}.user", f"{user!r} is not a login name; use lower-case letters, digits, '_' and '-', e.g. 'ubuntu'")
    vm = check.string(spec["vm"], f"{where}.vm") if spec.get("vm") is not None else None
    if vm is not None and image.suffix.lower() not in (".ova", ".ovf"):
        raise check.fail(f"{where}.vm", f"names a VM of an appliance, but the image {image.name} is not an .ova or .ovf; remove 'vm'")
    master = spec.get("master", False)
    if not isinstance(master, bool):
        raise check.fail(f"{where}.master", f"must be true or false, got {_kind(master)}")
    profiled = spec.get("profiled", False)
    if not isinstance(profiled, bool):
        raise check.fail(f"{where}.profiled", f"must be true or false, got {_kind(profiled)}")
    memory_mb = None
    if spec.get("memory_mb") is not None:
        memory_mb = float(check.integer(spec["memory_mb"], f"{where}.memory_mb", 64, 24 * 1024 * 1024))
    return Role(
        name=name,
        image=image,
        command=command,
        count=count,
        min_count=min_count,
        max_count=max_count,
        user=user,
        master=master,
        vm=vm,
        profiled=profiled,
        memory_mb=memory_mb,
    )


def _remote_path(check: _Checker, value: Any, where: str, workdir: str) -> str:
    """A remote path, normalised relative to the work folder; it may not leave the folder."""
    text = _safe_remote(check, check.string(value, where), where)
    if posixpath.isabs(text):
        absolute_workdir = workdir if posixpath.isabs(workdir) else None
        if absolute_workdir is None or not (text == absolute_workdir or text.startswith(absolute_workdir.rstrip("/") + "/")):
            raise check.fail(where, f"{text!r} is outside the remote work folder {workdir!r}; use a path relative to it")
        text = posixpath.relpath(text, absolute_workdir)
    normal = posixpath.normpath(text)
    if normal == ".." or normal.startswith("../"):
        raise check.fail(where, f"{text!r} is outside the remote work folder {workdir!r}; use a path inside it")
    return normal


def _transfer(check: _Checker, value: Any, where: str, base: Path, workdir: str, *, must_exist: bool) -> Transfer:
    spec = check.mapping(value, where, _TRANSFER_KEYS)
    for key in _TRANSFER_KEYS:
        if key not in spec:
            raise check.fail(f"{where}.{key}", "missing; each entry needs 'local' and 'remote'")
    local = (base / Path(check.string(spec["local"], f"{where}.local")).expanduser()).resolve()
    if must_exist and not local.exists():
        raise check.fail(f"{where}.local", f"{local} does not exist; create it or fix the path")
    remote = _remote_path(check, spec["remote"], f"{where}.remote", workdir)
    return Transfer(local=local, remote=remote)


def _profile(check: _Checker, value: Any) -> ProfileSpec:
    spec = check.mapping(value, "profile", _PROFILE_KEYS)
    for key in ("command", "scales", "workers", "full_scale"):
        if key not in spec:
            raise check.fail(f"profile.{key}", "missing; profiling needs command, scales, workers and full_scale")
    command = check.string(spec["command"], "profile.command")
    for placeholder in ("{scale}", "{workers}"):
        if placeholder not in command:
            raise check.fail("profile.command", f"has no {placeholder}; the command must take the scale and worker count, e.g. './app --scale {{scale}} -j {{workers}}'")
    scales = tuple(check.positive(s, f"profile.scales[{i}]") for i, s in enumerate(check.sequence(spec["scales"], "profile.scales")))
    workers = tuple(check.integer(w, f"profile.workers[{i}]", 1, 4096) for i, w in enumerate(check.sequence(spec["workers"], "profile.workers")))
    if len(set(scales)) < 2:
        raise check.fail("profile.scales", "needs at least two different scales to fit how runtime grows")
    if not workers:
        raise check.fail("profile.workers", "needs at least one worker count")
    full_scale = check.positive(spec["full_scale"], "profile.full_scale")
    if max(scales) > full_scale:
        raise check.fail("profile.scales", f"{max(scales):g} is above full_scale {full_scale:g}; profiling scales must be smaller than the real run")
    repeats = check.integer(spec.get("repeats", 2), "profile.repeats", 1, 20)
    timeout = check.positive(spec["timeout"], "profile.timeout") if spec.get("timeout") is not None else None
    return ProfileSpec(
        command=command,
        scales=tuple(sorted(set(scales))),
        workers=tuple(sorted(set(workers))),
        full_scale=full_scale,
        repeats=repeats,
        timeout_s=timeout,
    )


def _desktop(check: _Checker, value: Any, base: Path) -> Desktop:
    if isinstance(value, str):
        value = {"host": value}
    spec = check.mapping(value, "desktop", _DESKTOP_KEYS)
    host = check.string(spec.get("host", "local"), "desktop.host")
    if host == "local":
        return Desktop(kind="local")
    url = urlparse(host)
    if url.scheme != "ssh" or not url.hostname:
        raise check.fail("desktop.host", f"{host!r} must be 'local' or 'ssh://user@host:port'")
    try:
        port = url.port
    except ValueError:
        port = 0
    if port is None:
        port = 22
    if not 1 <= port <= 65535:
        raise check.fail("desktop.host", f"{host!r} has a bad port; use a port from 1 to 65535, e.g. ssh://user@host:2222")
    key = None
    if spec.get("key") is not None:
        key = (base / Path(check.string(spec["key"], "desktop.key")).expanduser()).resolve()
        if not key.is_file():
            raise check.fail("desktop.key", f"{key} does not exist; give the private key that logs into the VM")
    return Desktop(kind="ssh", user=url.username or DEFAULT_USER, hostname=url.hostname, port=port, key=key)
