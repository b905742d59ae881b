"""The descriptor d2c.yaml: malformed files give one precise line and exit 2 through the real CLI.

Each case is run as ``python -m d2c check`` in a fresh project folder, as a user would, and must
name the file and the field, say what is wrong, exit 2 and print no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from d2c.descriptor import load_descriptor
from d2c.errors import UsageError

REPO = Path(__file__).resolve().parents[1]

VALID = """\
name: demo
workdir: run
roles:
  - name: master
    image: app
    command: python3 main.py --scale 1.0
    count: 1
  - name: worker
    image: app
    count: auto
    min: 2
    max: 16
    user: researcher
inputs:
  - {local: data/params.json, remote: params.json}
outputs:
  - {remote: out, local: results}
profile:
  command: python3 main.py --scale {scale} --workers {workers}
  scales: [0.1, 0.02, 0.05]
  workers: [2, 1]
  full_scale: 1.0
  repeats: 3
  timeout: 90
desktop: {host: 'ssh://alice@vmhost:2222', key: id_test}
"""


def _edit(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


# (case id, descriptor text, field path named in the message, key phrase of the message)
MALFORMED = [
    ("unknown-top-key", _edit("roles:\n", "rolse:\n"), "rolse", "unknown key; did you mean 'roles'?"),
    ("unknown-role-key", _edit("    command: python3 main.py --scale 1.0\n", "    comand: python3 main.py --scale 1.0\n"),
     "roles[0].comand", "did you mean 'command'?"),
    ("unknown-profile-key", _edit("  repeats: 3\n", "  repeat: 3\n"), "profile.repeat", "did you mean 'repeats'?"),
    ("wrong-type-roles", "name: demo\nroles: master\n", "roles", "must be a list, got a string ('master')"),
    ("wrong-type-count", _edit("    count: 1\n", "    count: one\n"), "roles[0].count", "must be a whole number or 'auto'"),
    ("wrong-type-scales", _edit("  scales: [0.1, 0.02, 0.05]\n", "  scales: [0.1, small]\n"), "profile.scales[1]",
     "must be a number, got a string ('small')"),
    ("wrong-type-master-flag", _edit("    count: 1\n", "    count: 1\n    master: yes please\n"), "roles[0].master",
     "must be true or false"),
    ("missing-image", _edit("    image: app\n    command", "    command"), "roles[0].image", "missing; give role 'master' a VM image"),
    ("image-not-found", _edit("    image: app\n    command", "    image: vms/master.ova\n    command"), "roles[0].image",
     "master.ova does not exist"),
    ("image-not-an-image", _edit("    image: app\n    command", "    image: data/params.json\n    command"), "roles[0].image",
     "params.json is not a VM image"),
    ("missing-input-file", _edit("data/params.json", "data/missing.csv"), "inputs[0].local", "missing.csv does not exist"),
    ("input-without-remote", _edit("{local: data/params.json, remote: params.json}", "{local: data/params.json}"),
     "inputs[0].remote", "missing; each entry needs 'local' and 'remote'"),
    ("count-too-large", _edit("    count: 1\n", "    count: 5000\n"), "roles[0].count", "must be between 0 and 1000, got 5000"),
    ("count-negative", _edit("    count: auto\n", "    count: -3\n"), "roles[1].count", "must be between 0 and 1000, got -3"),
    ("count-outside-limits", _edit("    count: auto\n", "    count: 20\n"), "roles[1].count", "20 is outside min 2 .. max 16"),
    ("min-above-max", _edit("    min: 2\n", "    min: 32\n"), "roles[1].min", "min 32 is above max 16"),
    ("master-without-command", _edit("    command: python3 main.py --scale 1.0\n", ""), "roles[0].command",
     "role 'master' runs the app but has no command"),
    ("master-count-not-one", _edit("    count: 1\n", "    count: 2\n"), "roles[0].count", "must have count 1 when other roles exist"),
    ("two-masters", _edit("    user: researcher\n", "    user: researcher\n    master: true\n").replace(
        "    count: 1\n", "    count: 1\n    master: true\n", 1), "roles", "more than one role says 'master: true'"),
    ("duplicate-role", _edit("  - name: worker\n", "  - name: master\n"), "roles[1].name", "duplicate role name 'master'"),
    ("profile-without-scale", _edit("--scale {scale} --workers", "--scale 0.1 --workers"), "profile.command", "has no {scale}"),
    ("profile-without-workers", _edit("--workers {workers}\n", "--workers 2\n"), "profile.command", "has no {workers}"),
    ("profile-one-scale", _edit("  scales: [0.1, 0.02, 0.05]\n", "  scales: [0.1, 0.1]\n"), "profile.scales",
     "needs at least two different scales"),
    ("profile-scale-above-full", _edit("  scales: [0.1, 0.02, 0.05]\n", "  scales: [0.1, 2.0]\n"), "profile.scales",
     "2 is above full_scale 1"),
    ("output-absolute", _edit("{remote: out, local: results}", "{remote: /etc/out, local: results}"), "outputs[0].remote",
     "'/etc/out' is outside the remote work folder 'run'"),
    ("output-dotdot", _edit("{remote: out, local: results}", "{remote: out/../../secrets, local: results}"),
     "outputs[0].remote", "is outside the remote work folder 'run'"),
    ("workdir-root", _edit("workdir: run\n", "workdir: /\n"), "workdir", "must be a folder of its own"),
    ("bad-desktop-scheme", _edit("'ssh://alice@vmhost:2222'", "'http://vmhost:2222'"), "desktop.host",
     "must be 'local' or 'ssh://user@host:port'"),
    ("bad-desktop-port", _edit("'ssh://alice@vmhost:2222'", "'ssh://alice@vmhost:99999'"), "desktop.host", "has a bad port"),
    ("missing-desktop-key", _edit("key: id_test", "key: id_missing"), "desktop.key", "id_missing does not exist"),
    ("bad-name", _edit("name: demo\n", "name: my demo!\n"), "name", "must start with a letter or digit"),
    ("missing-name", _edit("name: demo\n", ""), "name", "missing; every descriptor needs 'name' and 'roles'"),
    ("top-level-list", "- name: demo\n", "(top level)", "must be a mapping of keys"),
    ("yaml-syntax", _edit("  workers: [2, 1]\n", "  workers: [2, 1\n"), "line 22", "fix the YAML syntax"),
    ("yaml-tab", _edit("    count: 1\n", "\tcount: 1\n"), "line 7, column 1", "fix the YAML syntax"),
    ("yaml-duplicate-key", VALID + "roles: []\n", f"line {len(VALID.splitlines()) + 1}, column 1",
     "key 'roles' appears twice in the same mapping"),
    ("empty-file", "", "(top level)", "the file is empty; run 'd2c init'"),
    ("only-comments", "# nothing here yet\n", "(top level)", "the file is empty"),
    ("master-count-auto", _edit("    count: 1\n", "    count: auto\n"), "roles[0].count",
     "must have count 1 when other roles exist, got auto"),
    ("lone-master-count-0", "name: demo\nroles:\n  - {name: master, image: app, command: ./run, count: 0, min: 0}\n",
     "roles[0].count", "needs at least one instance"),
    ("desktop-port-0", _edit("'ssh://alice@vmhost:2222'", "'ssh://alice@vmhost:0'"), "desktop.host", "has a bad port"),
    ("vm-without-appliance", _edit("    user: researcher\n", "    user: researcher\n    vm: worker-vm\n"), "roles[1].vm",
     "is not an .ova or .ovf"),
    ("bad-base-image", VALID + "base_image: ubuntu-20.04\n", "base_image", "must be one of ubuntu-24.04, ubuntu-22.04, debian-12 or an AMI id"),
    ("bad-ami-id", VALID + "base_image: ami-12\n", "base_image", "or an AMI id like ami-0123456789abcdef0"),
    ("bad-placement", VALID + "placement: partition\n", "placement", "must be 'cluster'"),
    ("deeply-nested", "name: demo\nroles: " + "[" * 3000 + "]" * 3000 + "\n", "", "fix the YAML"),
    ("two-worker-roles-unmarked", VALID.replace("roles:\n", "roles:\n  - {name: io, image: app, command: ./serve}\n", 1), "roles",
     "io, worker could each run the workers the profile measured; mark that role 'profiled: true'"),
    ("two-roles-profiled", _edit("    count: auto\n", "    count: auto\n    profiled: true\n").replace("roles:\n", "roles:\n  - {name: io, image: app, command: ./serve, profiled: true}\n", 1),
     "roles", "more than one role says 'profiled: true' (io, worker)"),
    ("memory-on-profiled-role", _edit("    count: auto\n", "    count: auto\n    memory_mb: 2048\n"), "roles[1].memory_mb",
     "is sized from the profile; 'memory_mb' is for service roles only"),
    ("service-without-command", _edit("    count: auto\n", "    count: auto\n    profiled: true\n").replace("roles:\n", "roles:\n  - {name: io, image: app}\n", 1),
     "roles[0].command", "service role 'io' runs no ranks, so it needs a command of its own"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the app folder, the input file and the key the VALID descriptor names."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('hello')\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "params.json").write_text("{}\n")
    (tmp_path / "id_test").write_text("not really a key\n")
    return tmp_path


def _check(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "d2c", "check", *args],
        cwd=folder, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.parametrize(("text", "field", "phrase"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_descriptor_gives_one_line_and_exit_2(project: Path, text: str, field: str, phrase: str):
    descriptor = project / "d2c.yaml"
    descriptor.write_text(text)

    result = _check(project)

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {descriptor}: {field}"), lines[0]
    assert phrase in lines[0], lines[0]


def test_missing_descriptor_points_to_init(tmp_path: Path):
    result = _check(tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'd2c.yaml'}: no such descriptor; run 'd2c init' to create one\n"


def test_binary_file_is_refused(project: Path):
    (project / "d2c.yaml").write_bytes(b"\xff\xfe\x00\x81garbage")
    result = _check(project)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("not a text file; a descriptor is YAML")


def test_valid_descriptor_parsed_values(project: Path):
    (project / "d2c.yaml").write_text(VALID)

    d = load_descriptor(project)

    assert d.path == project / "d2c.yaml"
    assert (d.name, d.workdir) == ("demo", "run")
    master, worker = d.roles
    assert d.master is master
    assert (master.name, master.image, master.command, master.count) == ("master", project / "app", "python3 main.py --scale 1.0", 1)
    assert master.image_is_folder
    assert (worker.count, worker.min_count, worker.max_count, worker.user, worker.command) == (None, 2, 16, "researcher", None)
    assert [(t.local, t.remote) for t in d.inputs] == [(project / "data" / "params.json", "params.json")]
    assert [(t.local, t.remote) for t in d.outputs] == [(project / "results", "out")]
    assert d.profile.scales == (0.02, 0.05, 0.1)
    assert d.profile.workers == (1, 2)
    assert (d.profile.full_scale, d.profile.repeats, d.profile.timeout_s) == (1.0, 3, 90.0)
    assert d.profile.render(0.05, 2) == "python3 main.py --scale 0.05 --workers 2"
    assert (d.desktop.kind, d.desktop.user, d.desktop.hostname, d.desktop.port) == ("ssh", "alice", "vmhost", 2222)
    assert d.desktop.key == project / "id_test"
    assert d.desktop.label == "ssh://alice@vmhost:2222"


def test_defaults_and_normalised_remote_paths(project: Path):
    (project / "d2c.yaml").write_text(textwrap.dedent("""\
        name: tiny
        workdir: /opt/job/
        roles:
          - {name: solo, image: app, command: ./run.sh}
        outputs:
          - {remote: /opt/job/out/, local: results}
          - {remote: ./logs/../logs, local: logs}
        """))

    d = load_descriptor(project / "d2c.yaml")

    assert d.workdir == "/opt/job"
    assert d.roles[0].master and d.roles[0].count == 1 and d.roles[0].user == "ubuntu"
    assert [t.remote for t in d.outputs] == ["out", "logs"]
    assert d.profile is None and d.desktop.kind == "local"


def test_base_image_and_placement(project: Path):
    """MPI-like apps (a worker role without a command, driven by the master) default to a cluster placement."""
    (project / "d2c.yaml").write_text(VALID)
    d = load_descriptor(project)
    assert (d.base_image, d.placement) == ("ubuntu-24.04", "cluster")
    (project / "d2c.yaml").write_text(VALID + "base_image: ami-0123456789abcdef0\nplacement: spread\n")
    d = load_descriptor(project)
    assert (d.base_image, d.placement) == ("ami-0123456789abcdef0", "spread")
    (project / "d2c.yaml").write_text(_edit("    count: auto\n", "    command: python3 worker.py\n    count: auto\n") + "base_image: debian-12\n")
    d = load_descriptor(project)
    assert (d.base_image, d.placement) == ("debian-12", "none"), "workers running their own command are not packed"
    (project / "d2c.yaml").write_text("name: solo\nroles:\n  - {name: master, image: app, command: ./run}\n")
    assert load_descriptor(project).placement == "none"


def test_a_service_role_beside_the_profiled_workers(project: Path):
    (project / "d2c.yaml").write_text(
        _edit("    count: auto\n", "    count: auto\n    profiled: true\n")
        .replace("roles:\n", "roles:\n  - {name: io, image: app, command: ./serve, count: 2, memory_mb: 6000}\n", 1)
    )
    d = load_descriptor(project)
    assert d.working.name == "worker" and [r.name for r in d.services] == ["io"]
    assert d.role("io").memory_mb == 6000 and d.placement == "cluster", "the profiled workers are still driven by mpirun"
    (project / "d2c.yaml").write_text(VALID)
    assert load_descriptor(project).working.name == "worker" and load_descriptor(project).services == ()


def test_role_lookup_names_the_roles(project: Path):
    (project / "d2c.yaml").write_text(VALID)
    d = load_descriptor(project)
    assert d.role("worker").max_count == 16
    with pytest.raises(UsageError, match=r"no role named 'gpu' \(roles: master, worker\)"):
        d.role("gpu")


def test_check_summarises_a_valid_descriptor(project: Path):
    (project / "d2c.yaml").write_text(VALID)

    result = _check(project)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"{project / 'd2c.yaml'}: valid" in out
    assert "master: runs the app, count 1, image app (folder)" in out
    assert "worker: runs the profiled workers, count auto (2..16), image app (folder), user researcher" in out
    assert "data/params.json -> run/params.json" in out
    assert "results <- run/out" in out
    assert "profile: 18 runs = scales 0.02, 0.05, 0.1 x workers 1, 2 x 3 repeats" in out
    assert "desktop: ssh://alice@vmhost:2222" in out
    assert len(out.splitlines()) <= 24


def test_yaml_merge_keys_are_accepted(project: Path):
    text = VALID.replace("  - name: worker\n    image: app\n", "  - &base\n    name: worker\n    image: app\n")
    text = text.replace("inputs:", "  - <<: *base\n    name: helper\n    count: 4\n    profiled: false\n    command: ./help\ninputs:")
    text = text.replace("    count: auto\n", "    count: auto\n    profiled: true\n")
    (project / "d2c.yaml").write_text(text)
    descriptor = load_descriptor(project / "d2c.yaml")
    helper = descriptor.role("helper")
    assert (helper.user, helper.min_count, helper.max_count, helper.count) == ("researcher", 2, 16, 4)
