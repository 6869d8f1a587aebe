"""inv size (mmdeploy/sizing.py): the pattern and per-role sizes for N users, from the
report's Table 1 and Mattermost's reference architectures, and the starting inventory it
writes: refused while its placeholders are there, valid once TEST-NET addresses fill them."""

import ipaddress
import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mmdeploy
from mmdeploy import sizing
from mmdeploy.errors import InventoryError

ROOT = Path(__file__).resolve().parents[2]
# Documentation ranges (RFC 5737): never contacted, only written into the file.
TEST_NET = itertools.chain(
    *(ipaddress.ip_network(n).hosts() for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
)


@pytest.mark.parametrize(
    "users, pattern, tier",
    [
        (150, "single", 200),
        (1999, "single", 2000),
        (2000, "multi", 2000),
        (2001, "multi", 25000),
        (10000, "multi", 25000),
        (10001, "cluster", 25000),
        (25000, "cluster", 25000),
        (50000, "cluster", 50000),
        (100000, "cluster", 100000),
        (500000, "cluster", 100000),
    ],
)
def test_pattern_and_tier(users, pattern, tier):
    rec = sizing.recommend(users)
    assert (rec.pattern, rec.tier.users) == (pattern, tier)


def test_figures_come_from_the_reference_architecture_and_meet_the_pattern():
    rec = sizing.recommend(50000)
    app, db, search = rec.role("app"), rec.role("db"), rec.role("search")
    assert (app.hosts, app.cpus, app.memory_gib) == (5, 8, 16)  # MM_50000: 5 x 8/16
    assert (db.hosts, db.cpus, db.memory_gib) == (5, 8, 64)  # writer + 4 readers, 8/64
    assert (search.hosts, search.cpus, search.memory_gib) == (4, 8, 64)
    assert "scale-to-50000-users" in app.source
    # The cluster pattern's minimums (from the role declarations) still hold.
    assert rec.role("storage").hosts == 4 and rec.role("proxy").hosts == 2 and rec.role("pushproxy").hosts == 2
    for r in rec.roles:  # every figure says where it comes from
        assert "reference architecture" in r.source or "ESTIMATE" in r.source or "lifetime storage" in r.source


def test_single_pattern_is_the_reports_shape():
    rec = sizing.recommend(1500)
    hosts = {name: roles for name, roles, _ in sizing.host_names(rec)}
    assert hosts == {
        "proxy1": ["proxy"],
        "app1": ["app"],
        "job1": ["jobserver", "monitoring"],
        "db1": ["db"],
        "db2": ["db"],
        "search1": ["search"],
        "storage1": ["storage"],
        "push1": ["pushproxy"],
    }


def test_lifetime_storage():
    # 10,000 users x 15 MB x 12 months x 1.5, plus the 0.8 GB base: 2,637 GiB (ceil), plus 20 for the system.
    assert sizing.recommend(10000).role("storage").disk_gib == 20 + 2638
    assert sizing.recommend(10000, mb_per_user_month=3).role("storage").disk_gib < 600


def test_bad_input_is_refused():
    for users in (0, -5, True):
        with pytest.raises(InventoryError, match="--users"):
            sizing.recommend(users)


@pytest.mark.parametrize("users", [500, 5000, 40000])
def test_written_inventory_validates_once_addresses_are_filled(tmp_path, users):
    text = sizing.inventory(sizing.recommend(users))
    path = tmp_path / "site.yml"
    path.write_text(text)
    with pytest.raises(InventoryError) as refused:  # the placeholders are refused, each by key
        mmdeploy.load(path)
    assert re.search(r"site\.yml:\d+: hosts\[0\]\.address: expected an IP address or host name", str(refused.value))
    addresses = iter(TEST_NET)
    filled = re.sub(r'"<address of [a-z0-9]+>"', lambda m: str(next(addresses)), text)
    path.write_text(filled)
    inv = mmdeploy.load(path)
    assert inv.pattern == sizing.recommend(users).pattern
    assert inv.settings.expected_users == users
    assert len(inv.hosts) == sum(r.hosts for r in sizing.recommend(users).roles if r.role != "monitoring")


def test_inv_size_writes_the_file(tmp_path):
    out = tmp_path / "hosts" / "site.yml"
    p = subprocess.run(
        [sys.executable, "-m", "invoke", "size", "--users", "3000", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "3,000 users: the multi pattern" in p.stdout and out.is_file()
    again = subprocess.run(
        [sys.executable, "-m", "invoke", "size", "--users", "3000", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "exists" in again.stderr
