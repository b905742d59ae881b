"""The base layer: where state lives, atomic files, and AWS errors turned into one line."""

from __future__ import annotations

import socket

import pytest

from d2c.errors import EXIT_FAILURE, EXIT_USAGE, UsageError, WorkError
from d2c.files import atomic_write_json, atomic_write_text
from d2c.state import cache_dir, state_dir


def test_state_dir_is_beside_the_descriptor_unless_overridden(tmp_path, monkeypatch):
    monkeypatch.delenv("D2C_HOME")
    assert state_dir(tmp_path) == tmp_path / ".d2c"
    assert (tmp_path / ".d2c").is_dir()
    monkeypatch.setenv("D2C_HOME", str(tmp_path / "elsewhere"))
    assert state_dir(tmp_path) == tmp_path / "elsewhere"


def test_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("D2C_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "d2c"


def test_atomic_write_replaces_whole_file_and_keeps_mode(tmp_path):
    target = tmp_path / "out" / "key"
    atomic_write_text(target, "secret", mode=0o600)
    assert target.read_text() == "secret"
    assert (target.stat().st_mode & 0o777) == 0o600
    atomic_write_json(tmp_path / "p.json", {"a": 1})
    assert (tmp_path / "p.json").read_text() == '{\n  "a": 1\n}\n'


def test_atomic_write_keeps_an_existing_files_mode(tmp_path):
    target = tmp_path / "plans.json"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640


def test_atomic_write_failure_leaves_old_content_and_no_temp_file(tmp_path):
    target = tmp_path / "profile.json"
    target.write_text("old")

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(target, {"x": Unserialisable()})
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.json"]


def test_missing_credentials_is_bad_input_naming_the_action(monkeypatch, tmp_path):
    from d2c.aws import aws_errors, client

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(UsageError) as caught:
        with aws_errors("listing instance types"):
            client("ec2").describe_instance_types()
    assert caught.value.exit_code == EXIT_USAGE
    assert str(caught.value).startswith("listing instance types: no AWS credentials found")


def test_unreachable_endpoint_is_a_failure_while_working(monkeypatch):
    from d2c.aws import aws_errors, client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(WorkError) as caught:
        with aws_errors("reading spot prices"):
            client("ec2", attempts=1).describe_spot_price_history()
    assert caught.value.exit_code == EXIT_FAILURE
    assert "reading spot prices: cannot reach AWS" in str(caught.value)


def test_aws_service_error_names_code_and_message(aws):
    from d2c.aws import aws_errors, client

    with pytest.raises(WorkError) as caught:
        with aws_errors("terminating the run's instances"):
            client("ec2").terminate_instances(InstanceIds=["i-0123456789abcdef0"])
    assert "terminating the run's instances: AWS said InvalidInstanceID.NotFound" in str(caught.value)
