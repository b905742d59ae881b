"""``d2c recommend`` end to end: a profile fitted from a runs CSV, a catalog CSV, exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from d2c.errors import UsageError
from d2c.durations import parse_duration
from planner.catalog import Catalog, InstanceOffer
from planner.catalog.csvfile import write_catalog_csv
from planner.plans import load_plans

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
DESCRIPTOR = """\
name: demo
roles:
  - name: master
    image: .
    command: python3 app.py
    count: auto
    max: 32
profile:
  command: python3 app.py --scale {scale} --workers {workers}
  scales: [0.1, 0.2, 0.4]
  workers: [1, 2, 4]
  full_scale: 2.0
"""


def d2c(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "d2c", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder app with a profile fitted from recorded runs (T = 20·s + 900·s/w) and a small catalog."""
    folder = tmp_path_factory.mktemp("app")
    (folder / "d2c.yaml").write_text(DESCRIPTOR)
    rows = ["scale,workers,wall_s,peak_rss_mb"]
    for scale in (0.1, 0.2, 0.4):
        for workers in (1, 2, 4):
            for repeat in range(2):
                rows.append(f"{scale},{workers},{(20 * scale + 900 * scale / workers) * (1 + 0.02 * repeat):.3f},{300 + 200 * scale:.1f}")
    (folder / "runs.csv").write_text("\n".join(rows) + "\n")
    done = d2c(folder, "profile", "import", "runs.csv", "-o", "profile.json")
    assert done.returncode == 0, done.stderr
    offers = [
        InstanceOffer("c6i.large", "us-east-1", 2, 4.0, "x86_64", 0.085, 0.035, fetched_at=NOW),
        InstanceOffer("c6i.2xlarge", "us-east-1", 8, 16.0, "x86_64", 0.34, 0.13, fetched_at=NOW),
        InstanceOffer("c7g.xlarge", "us-east-1", 4, 8.0, "arm64", 0.145, 0.05, fetched_at=NOW),
        InstanceOffer("c6i.large", "eu-west-1", 2, 4.0, "x86_64", 0.092, 0.04, fetched_at=NOW),
        InstanceOffer("r6i.large", "eu-west-1", 2, 16.0, "x86_64", 0.139, 0.05, fetched_at=NOW),
    ]
    write_catalog_csv(Catalog(tuple(offers), "import", NOW), folder / "catalog.csv")
    return folder


def test_json_plans_file_and_plot(project, tmp_path):
    out, png = tmp_path / "plans.json", tmp_path / "frontier.png"
    done = d2c(project, "recommend", "--budget", "5", "--deadline", "1h30m", "--catalog", "catalog.csv", "--json", "-o", str(out), "--plot", str(png))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["version"] == 1 and printed["descriptor"] == "demo"
    assert printed["inputs"]["budget_usd"] == 5 and printed["inputs"]["deadline_s"] == 5400
    assert printed["inputs"]["profile_digest"].startswith("sha256:")
    plans = printed["plans"]
    assert [p["rank"] for p in plans] == list(range(1, len(plans) + 1))
    assert plans[0]["on_frontier"] and plans[0]["why"].startswith("cheapest plan that meets 1h30m")
    assert all(p["cost_usd"]["p90"] <= 5 and p["time_s"]["p90"] <= 5400 for p in plans)
    assert all(r["arch"] == "x86_64" or r["instance_type"].startswith("c7g") for p in plans for r in p["roles"])
    assert load_plans(out).to_dict() == printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "old" in done.stderr  # the catalog's age line


def test_table_names_each_plan_and_why(project):
    done = d2c(project, "recommend", "--budget", "5", "--catalog", "catalog.csv", "--market", "on-demand", "--regions", "eu-west-1", "--top", "2")
    assert done.returncode == 0, done.stderr
    assert "eu-west-1" in done.stdout and "us-east-1" not in done.stdout
    assert "#1: cheapest plan that fits $5.00 at p90" in done.stdout
    assert "spot" not in done.stdout.split("#1:")[0]


def test_no_plan_exits_3_naming_the_limit(project):
    done = d2c(project, "recommend", "--budget", "0.05", "--catalog", "catalog.csv")
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1].startswith("error: no plan fits the $0.05 budget: the cheapest plan costs $")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "5", "--deadline", "3x"], "error: --deadline: '3x' is not a duration; write it like 3h, 90m, 1h30m or 45s"),
        (["--budget", "-1"], "error: --budget: -1 must be a positive, finite amount of USD"),
        (["--budget", "inf"], "error: --budget: inf must be a positive, finite amount of USD"),
        (["--budget", "5", "--deadline", "inf"], "error: --deadline: 'inf' must be a finite duration"),
        (["--budget", "5", "--regions", "mars-1"], "error: --regions: mars-1 not in the catalog"),
        (["--budget", "5", "--profile-file", "missing.json"], "error: missing.json: profile.json not found"),
        (["--budget", "5", "--profile", "a.json", "--profile-file", "b.json"], "error: d2c recommend: give '--profile-file' only"),
    ],
)
def test_bad_input_exits_2(project, tmp_path, args, message):
    out = tmp_path / "plans.json"
    done = d2c(project, "recommend", "--catalog", "catalog.csv", "-o", str(out), *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(message)
    assert not out.exists()


def test_the_run_hint_names_a_plans_file_written_elsewhere(project, tmp_path):
    out = tmp_path / "cheap plans.json"
    done = d2c(project, "recommend", "--budget", "5", "--catalog", "catalog.csv", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"run 'd2c run --plan 1 --plans '{out}'' to carry out plan #1" in done.stderr


def test_the_old_profile_spelling_still_plans_and_says_what_replaced_it(project, tmp_path):
    old = d2c(project, "recommend", "--budget", "5", "--catalog", "catalog.csv", "--profile", "profile.json", "-o", str(tmp_path / "old.json"))
    new = d2c(project, "recommend", "--budget", "5", "--catalog", "catalog.csv", "--profile-file", "profile.json", "-o", str(tmp_path / "new.json"))
    assert old.returncode == 0 and new.returncode == 0, old.stderr + new.stderr
    assert "note: '--profile' is now '--profile-file'" in old.stderr and "--profile'" not in new.stderr
    assert json.loads((tmp_path / "old.json").read_text())["plans"] == json.loads((tmp_path / "new.json").read_text())["plans"]


def test_whole_sample_catalog(project, shared_data):
    done = d2c(project, "recommend", "--budget", "20", "--deadline", "45m", "--catalog", str(shared_data / "aws-ec2-vms-sample.csv"), "--json")
    assert done.returncode == 0, done.stderr
    plans = json.loads(done.stdout)["plans"]
    assert len({p["region"] for p in plans}) >= 1 and len(plans) >= 5
    costs = [p["cost_usd"]["p50"] for p in plans[:5]]
    assert costs == sorted(costs)


@pytest.mark.parametrize("text, seconds", [("3h", 10800), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("2d", 172800), ("600", 600)])
def test_durations(text, seconds):
    assert parse_duration(text, "--deadline") == seconds


@pytest.mark.parametrize("text", ["", "h", "3h-", "1x", "0m", "1h 30", "inf", "nan"])
def test_bad_durations(text):
    with pytest.raises(UsageError, match="--deadline"):
        parse_duration(text, "--deadline")


def _long_names_catalog(folder: Path) -> Path:
    """The catalog's longest instance names and region names, the same prices in three regions."""
    offers = []
    for region in ("ap-southeast-4", "us-east-1", "us-west-2"):
        offers += [
            InstanceOffer("r7i.metal-24xl", region, 96, 768.0, "x86_64", 6.35, fetched_at=NOW),
            InstanceOffer("r7i.metal-48xl", region, 192, 1536.0, "x86_64", 12.70, fetched_at=NOW),
            InstanceOffer("c7i.metal-48xl", region, 192, 384.0, "x86_64", 8.568, fetched_at=NOW),
            InstanceOffer("c7i.large", region, 2, 4.0, "x86_64", 0.08925, fetched_at=NOW),
        ]
    path = folder / "long-names.csv"
    write_catalog_csv(Catalog(tuple(offers), "import", NOW), path)
    return path


def test_table_keeps_names_whole_at_80_columns_and_piped(project, tmp_path):
    catalog = _long_names_catalog(tmp_path)
    env = dict(os.environ, COLUMNS="80")
    done = subprocess.run(
        [sys.executable, "-m", "d2c", "recommend", "--budget", "200", "--exclude", "c7i.large", "--catalog", str(catalog), "--top", "3", "--output-gb", "0"],
        cwd=project, capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines())
    words = set(done.stdout.split())
    assert words & {"r7i.metal-48xl", "c7i.metal-48xl", "r7i.metal-24xl"}
    assert "ap-southeast-4" in words  # the region column whole
    # One line per role allocation: "12x c7i.metal-48xl", never a '+'-joined mix in one cell.
    assert re.search(r"\b\d+x (c7i|r7i)\.metal-(24|48)xl\b", done.stdout)
    assert " + " not in done.stdout.split("#1:")[0]
    assert re.search(r"plan #1 costs \$[\d.,]+ at p50: compute \$[\d.,]+, EBS root volumes \$[\d.,]+, public IPv4 \$[\d.,]+", " ".join(done.stdout.split()))


def test_the_same_mix_in_other_regions_folds_into_one_plan(project, tmp_path):
    catalog = _long_names_catalog(tmp_path)
    # No outputs, so egress (priced per region) is nothing and the three regions cost alike.
    done = d2c(project, "recommend", "--budget", "200", "--catalog", str(catalog), "--top", "3", "--output-gb", "0", "--json")
    assert done.returncode == 0, done.stderr
    plans = json.loads(done.stdout)["plans"]
    mixes = [tuple(sorted((r["role"], r["instance_type"], r["count"]) for r in p["roles"])) for p in plans[:3]]
    assert len(set(mixes)) == len(mixes), "every ranked plan is a distinct worker mix"
    first = plans[0]
    # Three regions price everything alike: plan 1 runs in the first, the others fold into it.
    assert first["region"] == "ap-southeast-4"
    assert [a["region"] for a in first["also_in"]] == ["us-east-1", "us-west-2"]
    assert all(a["cost_usd"] == first["cost_usd"] for a in first["also_in"])
    table = d2c(project, "recommend", "--budget", "200", "--catalog", str(catalog), "--top", "3", "--output-gb", "0")
    assert "also in us-east-1, us-west-2, +$0.00" in " ".join(table.stdout.split())


def test_recommend_from_a_profile_alone_plans_one_auto_role(project, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    done = d2c(alone, "recommend", "--budget", "5", "--profile-file", str(project / "profile.json"),
               "--catalog", str(project / "catalog.csv"), "--json")
    assert done.returncode == 0, done.stderr
    assert "no d2c.yaml here: planning one role 'app' of 1..64 instances (auto count)" in done.stderr
    assert "balance static" in done.stderr
    plans = json.loads(done.stdout)["plans"]
    assert plans and all({r["role"] for r in p["roles"]} == {"app"} for p in plans)
    assert json.loads(done.stdout)["descriptor"] == "profile"


def test_check_and_recommend_say_which_balance_applies(project):
    check = d2c(project, "check")
    assert check.returncode == 0, check.stderr
    assert "balance: static: the slowest rank sets the pace" in check.stdout
    done = d2c(project, "recommend", "--budget", "5", "--catalog", "catalog.csv", "--balance", "dynamic")
    assert "balance dynamic: a work queue" in done.stderr


SERVICES = """\
name: demo
roles:
  - {name: master, image: ., command: python3 app.py}
  - {name: worker, image: ., count: auto, max: 8, profiled: true}
  - {name: io, image: ., command: python3 serve.py, count: 2, memory_mb: 6000}
"""


def test_a_service_role_rides_in_every_plan_on_the_cheapest_type_that_holds_it(project, tmp_path):
    app = tmp_path / "services"
    app.mkdir()
    for name in ("profile.json", "catalog.csv"):
        (app / name).write_bytes((project / name).read_bytes())
    (app / "d2c.yaml").write_text(SERVICES.replace(", profiled: true", ""))
    unmarked = d2c(app, "recommend", "--budget", "5", "--catalog", "catalog.csv")
    assert unmarked.returncode == 2
    assert "worker, io could each run the workers the profile measured; mark that role 'profiled: true'" in unmarked.stderr

    (app / "d2c.yaml").write_text(SERVICES)
    done = d2c(app, "recommend", "--budget", "5", "--catalog", "catalog.csv", "--market", "on-demand", "--json", "-o", "plans.json")
    assert done.returncode == 0, done.stderr
    assert "service role 'io': 2 host(s) of the cheapest type holding 6000 MB, no ranks" in done.stderr
    plans = json.loads(done.stdout)["plans"]
    # 6000 MB x 1.1 + 512 MB needs 6.95 GiB: in us-east-1 the c7g.xlarge (8 GiB, $0.145/h), in eu-west-1 the r6i.large (16 GiB).
    cheapest = {"us-east-1": "c7g.xlarge", "eu-west-1": "r6i.large"}
    for plan in plans:
        [io] = [r for r in plan["roles"] if r["role"] == "io"]
        assert (io["count"], io["instance_type"], io["workers_per_instance"]) == (2, cheapest[plan["region"]], 0)
        assert {r["role"] for r in plan["roles"]} == {"master", "worker", "io"}
    first = plans[0]
    hourly = lambda roles: sum(r["count"] * r["price_usd_h"] for r in roles)  # noqa: E731
    run_h = first["time_s"]["p50"] / 3600
    # Each host is billed at least the run's time (rounded in plans.json): the service hosts too.
    compute = first["cost_breakdown"]["compute"]
    assert compute >= hourly(first["roles"]) * run_h * (1 - 1e-3), "the service hosts are billed for the whole run"
    assert compute > hourly([r for r in first["roles"] if r["role"] != "io"]) * run_h * 1.2
    table = d2c(app, "recommend", "--budget", "5", "--catalog", "catalog.csv", "--market", "on-demand")
    assert "2x c7g.xlarge" in table.stdout or "2x r6i.large" in table.stdout


def test_a_family_with_no_speed_basis_is_left_out_with_a_note_unless_named(project, tmp_path):
    """x9q has neither a table entry nor processor facts: never planned silently as a c5."""
    folder = tmp_path / "speedless"
    folder.mkdir()
    for name in ("d2c.yaml", "profile.json"):
        (folder / name).write_bytes((project / name).read_bytes())
    offers = [
        InstanceOffer("c6i.large", "us-east-1", 2, 4.0, "x86_64", 0.085, None, fetched_at=NOW),
        InstanceOffer("x9q.large", "us-east-1", 2, 4.0, "x86_64", 0.010, None, fetched_at=NOW),
    ]
    write_catalog_csv(Catalog(tuple(offers), "import", NOW), folder / "catalog.csv")
    plain = d2c(folder, "recommend", "--budget", "5", "--catalog", "catalog.csv", "--json")
    assert plain.returncode == 0, plain.stderr
    assert "left out of plans: x9q (no speed basis" in plain.stderr and "name one in --families" in plain.stderr
    assert all(r["instance_type"] == "c6i.large" for p in json.loads(plain.stdout)["plans"] for r in p["roles"])
    named = d2c(folder, "recommend", "--budget", "5", "--catalog", "catalog.csv", "--families", "x9q", "--json")
    assert named.returncode == 0, named.stderr
    assert "x9q: no speed basis; planned at an assumed 1 x c5 core because --families names it" in named.stderr
    assert {r["instance_type"] for p in json.loads(named.stdout)["plans"] for r in p["roles"]} == {"x9q.large"}
