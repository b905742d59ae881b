"""LocalHost: commands and copies on this machine, behind the same interface as SSHHost."""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
import time
from pathlib import Path

import psutil
import pytest

from d2c.errors import HostError
from d2c.transport import LocalHost
from d2c.transport.base import TAIL_LINES, OutputTail, pump_lines


def _checksums(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _wait_until_gone(tag: str, seconds: float = 3.0) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while True:
        left = [
            p
            for p in psutil.process_iter(["cmdline", "status"])
            if p.info["status"] != psutil.STATUS_ZOMBIE
            and any(tag in part for part in p.info["cmdline"] or [])
        ]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def test_exit_status_and_only_the_last_lines_are_kept(tmp_path):
    host = LocalHost(tmp_path)
    result = host.run("for i in $(seq 1 120); do echo line-$i; done; echo oops >&2; exit 5")
    assert (result.exit_status, result.ok, result.timed_out) == (5, False, False)
    lines = result.stdout_tail.splitlines()
    assert len(lines) == TAIL_LINES
    assert (lines[0], lines[-1]) == (f"line-{121 - TAIL_LINES}", "line-120")
    assert result.stderr_tail == "oops"


def test_lines_stream_to_the_callback_before_the_command_ends(tmp_path):
    # The command only goes on once the callback has seen its first line.
    flag = tmp_path / "first-line-seen"
    lines: list[str] = []

    def on_stdout(line: str) -> None:
        lines.append(line)
        if line == "first":
            flag.touch()

    result = LocalHost(tmp_path).run(
        f"echo first; while [ ! -e {flag} ]; do sleep 0.05; done; echo second",
        timeout=20,
        on_stdout=on_stdout,
    )
    assert not result.timed_out and result.ok
    assert lines == ["first", "second"]


def test_environment_and_relative_working_directory(tmp_path):
    host = LocalHost(tmp_path / "root")
    (tmp_path / "root" / "job").mkdir()
    value = "two words 'quoted' $HOME"
    result = host.run('printf "%s\\n" "$D2C_VALUE"; pwd', env={"D2C_VALUE": value}, cwd="job")
    assert result.stdout_tail.splitlines() == [value, str(tmp_path / "root" / "job")]
    assert host.run("pwd").stdout_tail == str(tmp_path / "root")
    with pytest.raises(HostError, match="local: cannot start 'pwd'"):
        host.run("pwd", cwd="missing")


def test_timeout_kills_the_process_tree(tmp_path):
    tag = f"{os.getpid()}.{random.Random(3).randint(100, 999)}"
    started = time.monotonic()
    result = LocalHost(tmp_path).run(f"sleep {tag} & sleep {tag}; wait", timeout=0.5)
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 3
    assert _wait_until_gone(tag) == []


def test_start_poll_and_kill(tmp_path):
    seen = threading.Event()
    tag = f"{os.getpid()}.{random.Random(4).randint(100, 999)}"
    process = LocalHost(tmp_path).start(f"echo up; sleep {tag}", on_stdout=lambda line: seen.set())
    assert seen.wait(5)
    assert process.poll() is None
    # "up" comes from the shell just before it execs sleep; mid-exec the command line reads empty.
    deadline = time.monotonic() + 5
    while tag not in " ".join(psutil.Process(process.pid).cmdline()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tag in " ".join(psutil.Process(process.pid).cmdline())
    process.kill()
    result = process.wait(timeout=5)
    assert result.stdout_tail == "up" and process.poll() is not None
    assert _wait_until_gone(tag) == []
    assert LocalHost(tmp_path).start("exit 6").wait(5).exit_status == 6


def test_put_and_get_copy_folders_with_their_modes(tmp_path):
    rng = random.Random(8)
    source = tmp_path / "inputs"
    for index in range(30):
        path = source / f"d{index % 4}" / f"f{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(0, 20000)))
    (source / "d1" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (source / "d1" / "run.sh").chmod(0o755)
    expected = _checksums(source)

    host = LocalHost(tmp_path / "remote-root")
    host.put(source, "work/inputs")
    assert _checksums(tmp_path / "remote-root" / "work" / "inputs") == expected
    assert host.run("./d1/run.sh", cwd="work/inputs").stdout_tail == "hi"

    host.get("work/inputs", tmp_path / "back" / "copy")
    assert _checksums(tmp_path / "back" / "copy") == expected
    assert (tmp_path / "back" / "copy" / "d1" / "run.sh").stat().st_mode & 0o777 == 0o755

    host.put(source / "d0" / "f0.bin", "single/f0.bin")
    copied = tmp_path / "remote-root" / "single" / "f0.bin"
    assert copied.read_bytes() == (source / "d0" / "f0.bin").read_bytes()
    with pytest.raises(HostError, match="does not exist"):
        host.get("nothing-here", tmp_path / "x")


class _BreakingStream(io.BytesIO):
    """A stream that fails with OSError after its first line, as a pipe or channel can."""

    def readline(self, *args):
        if self.tell():
            raise OSError("connection reset")
        return super().readline(*args)


def test_pump_lines_feeds_each_line_and_closes_the_stream():
    seen: list[str] = []
    tail = OutputTail(seen.append)
    stream = io.BytesIO(b"first\r\nsecond \xff\nlast")
    pump_lines(stream, tail)
    assert seen == ["first", "second \ufffd", "last"]
    assert tail.text() == "first\nsecond \ufffd\nlast" and stream.closed
    broken = _BreakingStream(b"only\nnever\n")
    pump_lines(broken, OutputTail(seen.append))
    assert seen[-1] == "only" and broken.closed
