"""SSHHost against a real OpenSSH sshd on 127.0.0.1 (and, as root, inside a network namespace).

The sshd runs on this machine, so the tests can look at the "remote" processes and files directly
to check what the transport claims.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from d2c.errors import HostError, HostKeyMismatch, UsageError
from d2c.transport.known_hosts import KnownHosts, host_entry, parse_public_key
from d2c.transport.ssh import SSHHost, check_remote_name
from tests.sshd_server import SshServer, free_port, generate_keypair


def _live_processes_with(tag: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(tag in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def _wait_until_gone(tag: str, seconds: float = 3.0) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (left := _live_processes_with(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _checksums(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _host(server: SshServer, key: Path, known_hosts: Path, **options) -> SSHHost:
    return SSHHost(
        server.address,
        server.port,
        user=server.user,
        key_path=key,
        known_hosts=known_hosts,
        **options,
    )


# -- known_hosts format (no server needed) ------------------------------------------------------


def test_parse_public_key_reads_pub_and_known_hosts_lines(tmp_path):
    line = generate_keypair(tmp_path / "k")
    key = parse_public_key(line)
    assert key.key_type == "ssh-ed25519"
    assert parse_public_key(f"[10.0.0.5]:2222 {line}") == key
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")],
        capture_output=True,
        text=True,
        check=True,
    )
    fingerprint = listed.stdout.split()[1]
    assert key.fingerprint == fingerprint
    with pytest.raises(UsageError, match="not an OpenSSH public key"):
        parse_public_key("ssh-ed25519 not-base64!")


def test_known_hosts_matches_hashed_and_wildcard_entries(tmp_path):
    key = parse_public_key(generate_keypair(tmp_path / "k"))
    salt = os.urandom(20)
    digest = hmac.new(salt, b"[10.0.0.5]:2222", hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    path = tmp_path / "known_hosts"
    path.write_text(
        f"# comment\n{hashed} {key.line()}\n"
        f"10.1.*,!10.1.0.9 {key.line()}\n"
        f"build.example {key.line()}\n"
        f"[10.2.0.1]:2200 {key.line()}\n"
    )
    known = KnownHosts(path)
    assert [p.line_number for p in known.lookup("10.0.0.5", 2222)] == [2]
    assert known.lookup("10.0.0.5", 22) == []
    assert [p.line_number for p in known.lookup("10.1.3.4", 22)] == [3]
    assert known.lookup("10.1.0.9", 22) == []
    assert [p.line_number for p in known.lookup("BUILD.example", 22)] == [4]
    assert known.lookup("build-example", 22) == []
    assert [p.line_number for p in known.lookup("10.2.0.1", 2200)] == [5]
    assert known.lookup("1", 2200) == []
    assert host_entry("build.example", 22) == "build.example"
    assert host_entry("10.0.0.5", 2222) == "[10.0.0.5]:2222"


def test_known_hosts_refuses_a_changed_key_without_touching_the_file(tmp_path):
    old = parse_public_key(generate_keypair(tmp_path / "old"))
    new = parse_public_key(generate_keypair(tmp_path / "new"))
    path = tmp_path / "known_hosts"
    known = KnownHosts(path)
    assert known.verify_or_pin("10.0.0.5", 22, old) is True
    assert known.verify_or_pin("10.0.0.5", 22, old) is False
    before = path.read_bytes()
    with pytest.raises(HostKeyMismatch, match=rf"line 1 of {re.escape(str(path))}"):
        known.verify_or_pin("10.0.0.5", 22, new)
    assert path.read_bytes() == before
    assert before.decode() == f"10.0.0.5 {old.line()}\n"


# -- commands -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_exit_status_and_output_tails(ssh_host):
    result = ssh_host.run("echo out-1; echo out-2; echo err-1 >&2; exit 3")
    assert result.exit_status == 3 and not result.ok and not result.timed_out
    assert result.stdout_tail == "out-1\nout-2"
    assert result.stderr_tail == "err-1"
    assert ssh_host.run("true").ok


@pytest.mark.integration
def test_lines_stream_to_the_callback_before_the_command_ends(ssh_host, tmp_path):
    # The command only goes on once the callback has seen its first line: without streaming it
    # would wait until its time-out.
    flag = tmp_path / "first-line-seen"
    lines: list[str] = []
    errors: list[str] = []

    def on_stdout(line: str) -> None:
        lines.append(line)
        if line == "first":
            flag.touch()

    result = ssh_host.run(
        f"echo first; echo warn >&2; while [ ! -e {flag} ]; do sleep 0.05; done; echo second",
        timeout=20,
        on_stdout=on_stdout,
        on_stderr=errors.append,
    )
    assert not result.timed_out and result.ok
    assert (lines, errors) == (["first", "second"], ["warn"])


@pytest.mark.integration
def test_environment_and_working_directory_are_passed_literally(ssh_host, tmp_path):
    workdir = tmp_path / "a dir with 'quotes'"
    workdir.mkdir()
    value = "two words, 'single' \"double\" $HOME `date` \\ end"
    result = ssh_host.run(
        'printf "%s\\n" "$D2C_VALUE"; pwd', env={"D2C_VALUE": value}, cwd=str(workdir)
    )
    assert result.ok, result.stderr_tail
    assert result.stdout_tail.splitlines() == [value, str(workdir)]
    home = os.path.expanduser(f"~{ssh_host.user}")
    assert ssh_host.run("pwd").stdout_tail == home
    assert ssh_host.run("pwd", cwd="~").stdout_tail == home


@pytest.mark.integration
def test_a_missing_working_directory_or_bad_variable_name_is_a_clear_error(ssh_host, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(HostError, match=rf"cannot start 'pwd'.*{re.escape(str(missing))}"):
        ssh_host.run("pwd", cwd=str(missing))
    with pytest.raises(UsageError, match="not a valid environment variable name"):
        ssh_host.run("true", env={"BAD NAME": "x"})


@pytest.mark.integration
def test_timeout_kills_the_remote_process_tree(ssh_host):
    tag = f"{random.Random(11).randint(1000, 9999)}.{os.getpid()}"
    started = time.monotonic()
    result = ssh_host.run(f"sleep {tag} & sleep {tag}; wait", timeout=1.0)
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 5
    assert _wait_until_gone(tag) == []


@pytest.mark.integration
def test_start_reports_the_remote_pid_and_kill_ends_it(ssh_host):
    seen = threading.Event()
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        seen.set()

    tag = f"{os.getpid()}.{random.Random(12).randint(100, 999)}"
    process = ssh_host.start(f"echo started; sleep {tag}; echo never", on_stdout=on_line)
    assert seen.wait(10) and lines == ["started"]
    assert process.poll() is None
    # The profiler reads /proc/<pid> of the command through further commands on the same host.
    status = ssh_host.run(f"awk '/^(Pid|State):/ {{print $2}}' /proc/{process.pid}/status")
    assert status.ok and status.stdout_tail.split() == ["S", str(process.pid)]
    assert tag in " ".join(psutil.Process(process.pid).cmdline())
    process.kill()
    result = process.wait(timeout=5)
    assert result.duration_s < 8 and "never" not in result.stdout_tail
    assert process.poll() is not None
    assert _wait_until_gone(tag) == []


@pytest.mark.integration
def test_started_command_returns_its_status(ssh_host):
    process = ssh_host.start("echo done; exit 4")
    result = process.wait(timeout=10)
    assert (result.exit_status, result.stdout_tail, result.timed_out) == (4, "done", False)
    assert process.poll() == 4


# -- files --------------------------------------------------------------------------------------


@pytest.mark.integration
def test_folder_of_100_files_and_a_50_mb_file_round_trips_intact(ssh_host, tmp_path):
    rng = random.Random(2024)
    source = tmp_path / "inputs"
    for index in range(100):
        path = source / f"part-{index % 7}" / f"file-{index:03d}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(0, 64 * 1024)))
    (source / "part-0" / "file-000.dat").chmod(0o750)
    (source / "big.bin").write_bytes(rng.randbytes(50 * 1024 * 1024))
    expected = _checksums(source)
    assert len(expected) == 101

    remote = tmp_path / "remote" / "not yet" / "inputs"
    ssh_host.put(source, str(remote))
    remote_big = ssh_host.run("sha256sum big.bin", cwd=str(remote))
    assert remote_big.stdout_tail.split()[0] == expected["big.bin"]
    assert _checksums(remote) == expected
    assert (remote / "part-0" / "file-000.dat").stat().st_mode & 0o777 == 0o750

    back = tmp_path / "fetched" / "outputs"
    ssh_host.get(str(remote), back)
    assert _checksums(back) == expected
    assert (back / "part-0" / "file-000.dat").stat().st_mode & 0o777 == 0o750
    assert not list(back.rglob("*.part"))


@pytest.mark.integration
def test_threads_upload_in_parallel_through_one_host(ssh_host, tmp_path):
    rng = random.Random(5)
    payloads = {f"f{i}.bin": rng.randbytes(512 * 1024) for i in range(6)}
    for name, data in payloads.items():
        (tmp_path / name).write_bytes(data)
    failures: list[BaseException] = []

    def upload(name: str) -> None:
        try:
            ssh_host.put(tmp_path / name, str(tmp_path / "up" / name))
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=upload, args=(name,)) for name in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert {name: (tmp_path / "up" / name).read_bytes() for name in payloads} == payloads


@pytest.mark.integration
def test_relative_remote_paths_are_under_the_login_home(ssh_host, tmp_path):
    folder = f".d2c-test-{uuid.uuid4().hex[:8]}"
    home = Path(os.path.expanduser(f"~{ssh_host.user}"))
    (tmp_path / "note.txt").write_text("hello\n")
    try:
        ssh_host.put(tmp_path / "note.txt", f"{folder}/sub/note.txt")
        assert (home / folder / "sub" / "note.txt").read_text() == "hello\n"
        ssh_host.get(f"~/{folder}/sub/note.txt", tmp_path / "copy.txt")
        assert (tmp_path / "copy.txt").read_text() == "hello\n"
        assert ssh_host.run("cat note.txt", cwd=f"{folder}/sub").stdout_tail == "hello"
    finally:
        shutil.rmtree(home / folder, ignore_errors=True)


@pytest.mark.integration
def test_missing_files_are_named_in_the_error(ssh_host, tmp_path):
    with pytest.raises(HostError, match=re.escape(f"{tmp_path}/absent does not exist")):
        ssh_host.get(str(tmp_path / "absent"), tmp_path / "x")
    with pytest.raises(HostError, match="does not exist"):
        ssh_host.put(tmp_path / "absent-local", str(tmp_path / "y"))
    assert not (tmp_path / "x").exists()


@pytest.mark.integration
def test_setuid_and_setgid_bits_set_on_the_host_never_reach_the_local_copy(ssh_host, tmp_path):
    remote = tmp_path / "remote-out"
    made = ssh_host.run(
        f"mkdir -p {remote}/shared && printf 'tool\\n' > {remote}/tool && chmod 4755 {remote}/tool "
        f"&& printf 'x\\n' > {remote}/shared/data && chmod 6644 {remote}/shared/data && chmod 2775 {remote}/shared"
    )
    assert made.ok, made.stderr_tail
    assert (remote / "tool").stat().st_mode & 0o7777 == 0o4755

    back = tmp_path / "fetched"
    ssh_host.get(str(remote), back)
    assert (back / "tool").read_text() == "tool\n"
    assert (back / "tool").stat().st_mode & 0o7777 == 0o755
    assert (back / "shared" / "data").stat().st_mode & 0o7777 == 0o644
    assert (back / "shared").stat().st_mode & 0o7777 == 0o775
    ssh_host.get(str(remote / "tool"), tmp_path / "single-tool")
    assert (tmp_path / "single-tool").stat().st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../../etc/passwd", "x\0y"])
def test_remote_names_that_are_not_one_plain_file_name_are_refused(name):
    with pytest.raises(HostError, match=re.escape(f"/out lists an entry named {name!r}, which is not a plain file name")):
        check_remote_name(name, "/out")


@pytest.mark.parametrize("name", ["result.csv", "..hidden", ".profile", "a b", "naïve…"])
def test_plain_remote_names_are_accepted(name):
    assert check_remote_name(name, "/out") == name


# -- host keys ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_host_key_is_pinned_on_first_use_and_accepted_afterwards(sshd, client_key, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    with _host(sshd, client_key, known_hosts) as host:
        assert host.run("true").ok
    pinned = known_hosts.read_text()
    server_key = parse_public_key(sshd.host_public_key)
    assert pinned == f"[127.0.0.1]:{sshd.port} {server_key.line()}\n"
    with _host(sshd, client_key, known_hosts) as again:
        assert again.run("true").ok
    assert known_hosts.read_text() == pinned


@pytest.mark.integration
def test_changed_host_key_is_refused_and_known_hosts_untouched(sshd, client_key, tmp_path):
    other = parse_public_key(generate_keypair(tmp_path / "impostor"))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"other.example {other.line()}\n[127.0.0.1]:{sshd.port} {other.line()}\n"
    )
    before = known_hosts.read_bytes()
    started = time.monotonic()
    with pytest.raises(HostKeyMismatch) as caught:
        _host(sshd, client_key, known_hosts).run("true")
    message = str(caught.value)
    assert "\n" not in message
    assert f"line 2 of {known_hosts}" in message and "remove that line" in message
    assert parse_public_key(sshd.host_public_key).fingerprint in message
    assert known_hosts.read_bytes() == before
    # A changed key is not a transient failure: no retries.
    assert time.monotonic() - started < 3


@pytest.mark.integration
def test_expected_host_key_is_the_only_one_accepted(sshd, client_key, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    with _host(sshd, client_key, known_hosts, expected_host_key=sshd.host_public_key) as host:
        assert host.run("echo ok").stdout_tail == "ok"
    assert not known_hosts.exists()
    impostor = generate_keypair(tmp_path / "impostor")
    with pytest.raises(HostKeyMismatch, match="expected; connection refused"):
        _host(sshd, client_key, known_hosts, expected_host_key=impostor).run("true")
    assert not known_hosts.exists()


# -- connecting ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_dead_host_gives_a_clear_error_after_the_retry_budget(client_key, tmp_path):
    port = free_port()
    host = SSHHost(
        "127.0.0.1", port, user="ubuntu", key_path=client_key, known_hosts=tmp_path / "kh",
        retries=3, backoff_s=0.2,
    )
    started = time.monotonic()
    with pytest.raises(HostError) as caught:
        host.run("true")
    elapsed = time.monotonic() - started
    assert re.fullmatch(
        rf"ssh ubuntu@127\.0\.0\.1:{port}: "
        rf"no answer after 3 attempts over \d+\.\d s \(Connection refused\)",
        str(caught.value),
    )
    # Backoff 0.2 s then 0.4 s between the three attempts.
    assert 0.6 <= elapsed < 3


@pytest.mark.integration
def test_silent_host_times_out_within_the_budget(client_key, tmp_path):
    with socket.socket() as listener:
        # The kernel completes the TCP handshake but nothing ever speaks SSH.
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        host = SSHHost(
            "127.0.0.1", port, user="ubuntu", key_path=client_key, known_hosts=tmp_path / "kh",
            connect_timeout=0.5, retries=2, backoff_s=0.1, name="worker-1",
        )
        started = time.monotonic()
        expected = rf"^worker-1 \(ssh ubuntu@127\.0\.0\.1:{port}\): no answer after 2 attempts"
        with pytest.raises(HostError, match=expected):
            host.connect()
        assert time.monotonic() - started < 4


@pytest.mark.integration
def test_rsa_keys_work_and_unknown_keys_are_refused(tmp_path):
    rsa_public = generate_keypair(tmp_path / "id_rsa", key_type="rsa")
    generate_keypair(tmp_path / "stranger")
    with SshServer(tmp_path / "server", authorized_keys=[rsa_public]) as server:
        with _host(server, tmp_path / "id_rsa", tmp_path / "kh") as host:
            assert host.run("echo rsa").stdout_tail == "rsa"
        stranger = _host(server, tmp_path / "stranger", tmp_path / "kh", retries=2, backoff_s=0.1)
        expected = rf"key {re.escape(str(tmp_path / 'stranger'))} refused after 2 attempts"
        with pytest.raises(HostError, match=expected):
            stranger.run("true")


def test_unusable_key_files_are_usage_errors(tmp_path):
    known_hosts = tmp_path / "kh"
    host = SSHHost("127.0.0.1", user="u", key_path=tmp_path / "missing", known_hosts=known_hosts)
    with pytest.raises(UsageError, match="key file .*missing not found"):
        host.run("true")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(tmp_path / "locked")],
        check=True,
    )
    locked = SSHHost("127.0.0.1", user="u", key_path=tmp_path / "locked", known_hosts=known_hosts)
    with pytest.raises(UsageError, match="has a passphrase"):
        locked.run("true")


# -- network namespaces (how the executor's fake EC2 instances are reached) -----------------------


@pytest.mark.integration
@pytest.mark.root
def test_sshd_in_a_network_namespace_is_reached_at_its_own_address(client_key, tmp_path):
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    suffix = f"{os.getpid() % 10000}{random.Random().randint(0, 99):02d}"
    namespace, outer, inner = f"d2c-ssh-{suffix}", f"d2cs{suffix}", f"d2cp{suffix}"
    octet = int(suffix) % 250 + 1
    host_ip, guest_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"
    steps = [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "add", outer, "type", "veth", "peer", "name", inner],
        ["ip", "link", "set", inner, "netns", namespace],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", outer],
        ["ip", "link", "set", outer, "up"],
        ["ip", "netns", "exec", namespace, "ip", "addr", "add", f"{guest_ip}/30", "dev", inner],
        ["ip", "netns", "exec", namespace, "ip", "link", "set", inner, "up"],
        ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"],
    ]
    server = None
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                why = f"{' '.join(step)}: {done.stderr.strip()}"
                pytest.skip(f"cannot set up a network namespace here: {why}")
        public = client_key.with_name(client_key.name + ".pub").read_text()
        server = SshServer(
            tmp_path / "sshd", authorized_keys=[public], address=guest_ip, netns=namespace
        ).start()
        assert server.port == 22
        expected = server.host_public_key
        with _host(server, client_key, tmp_path / "kh", expected_host_key=expected) as host:
            result = host.run("ip -o -4 addr show dev " + inner)
            assert result.ok and guest_ip in result.stdout_tail
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


@pytest.mark.integration
def test_a_dropped_connection_is_reopened_on_next_use(tmp_path, client_key):
    public = client_key.with_name(client_key.name + ".pub").read_text()
    with SshServer(tmp_path / "server", authorized_keys=[public]) as server:
        with _host(server, client_key, tmp_path / "kh") as host:
            assert host.run("echo one").stdout_tail == "one"
            # The per-connection sshd process dies, as when a machine's sshd restarts.
            for child in psutil.Process(server.pid).children():
                child.kill()
            assert host.run("echo two").stdout_tail == "two"


@pytest.mark.integration
def test_symlinks_are_followed_without_looping(ssh_host, tmp_path):
    tree = tmp_path / "tree"
    (tree / "data").mkdir(parents=True)
    (tree / "data" / "values.txt").write_text("1 2 3\n")
    (tree / "alias.txt").symlink_to("data/values.txt")
    (tree / "data" / "up").symlink_to("..")
    (tree / "dangling").symlink_to("nowhere")
    ssh_host.put(tree, str(tmp_path / "remote"))
    copied = tmp_path / "remote"
    assert sorted(str(p.relative_to(copied)) for p in copied.rglob("*")) == [
        "alias.txt", "data", "data/values.txt",
    ]
    assert not (copied / "alias.txt").is_symlink()
    fetched = tmp_path / "fetched"
    ssh_host.get(str(tree), fetched)
    assert sorted(str(p.relative_to(fetched)) for p in fetched.rglob("*")) == [
        "alias.txt", "data", "data/values.txt",
    ]
    assert (fetched / "alias.txt").read_text() == "1 2 3\n"


def test_concurrent_pinning_keeps_every_host(tmp_path):
    """Processes (and threads in each) pinning into one file at once lose no line."""
    path = tmp_path / "state" / "known_hosts"
    keys = [generate_keypair(tmp_path / f"k{i}") for i in range(3)]
    script = (
        "import sys, threading\n"
        "from d2c.transport.known_hosts import KnownHosts, parse_public_key\n"
        "path, index, key = sys.argv[1], int(sys.argv[2]), parse_public_key(sys.argv[3])\n"
        "def pin(thread):\n"
        "    for port in range(2200, 2205):\n"
        "        KnownHosts(path).verify_or_pin(f'10.{index}.{thread}.1', port, key)\n"
        "threads = [threading.Thread(target=pin, args=(t,)) for t in range(2)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
    )
    repo = Path(__file__).resolve().parents[1]
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(i), key], cwd=repo)
        for i, key in enumerate(keys)
    ]
    assert [worker.wait(60) for worker in workers] == [0, 0, 0]
    lines = path.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 3 * 2 * 5
    assert sorted(p.name for p in path.parent.iterdir()) == ["known_hosts"]
    assert path.stat().st_mode & 0o777 == 0o600
