"""The single pattern on Debian 13 (trixie) hosts: the same components pick the
distribution's own versions from mmdeploy/distros.py (PostgreSQL 17, MariaDB 11.8, the
1.x nginx exporter, the 0.17 mysqld exporter), deploy, verify, and a second deploy
changes nothing."""

import json
import re
import subprocess

import jsonschema
import pytest

from mmdeploy import jsonout, testbed

from .conftest import inv, on

pytestmark = pytest.mark.e2e
BED_SETTINGS = ["monitoring.grafana=false"]  # Grafana cannot be downloaded here


def sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


def changed(output: str) -> int:
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    return int(total[0])


def deploy_and_verify(path, overrides):
    first = inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    assert changed(first.stdout) > 0
    verify = inv("verify", "--inventory", path, *sets(overrides), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ok   every Prometheus target up on job1" in verify.stdout  # the exporters' flags per series
    return verify


def test_single_pattern_on_trixie_with_postgresql_17(bed, standin_release):
    path = str(bed("single", fresh=True, distro="trixie"))
    overrides = standin_release() + BED_SETTINGS
    assert 'VERSION_ID="13"' in on("db1", "cat /etc/os-release")
    deploy_and_verify(path, overrides)
    assert re.search(r"^17\s+main\s+5432\s+online\s", on("db1", "pg_lsclusters -h"), re.M)
    assert re.search(r"^17\s+main\s+5432\s+online,recovery\s", on("db2", "pg_lsclusters -h"), re.M)
    again = inv("deploy", "--inventory", path, *sets(overrides), "--yes")
    assert changed(again.stdout) == 0, again.stdout


def test_topology_draws_the_live_state(bed, standin_release, tmp_path):
    """After the deploy above: the DB roles as the nodes say, then a host that stops is
    drawn as down (read-only SSH with short time limits)."""
    path = str(bed("single", distro="trixie"))
    svg = tmp_path / "live.svg"
    drawn = inv("topology", "--inventory", path, "--out", str(svg))
    assert f"topology: {svg}" in drawn.stdout
    text = svg.read_text()
    assert "[primary, writable]" in text and "[replica, streaming]" in text and "(live state)" in text
    subprocess.run(["docker", "stop", "-t", "5", testbed.container_name("app1")], check=True, capture_output=True)
    try:
        inv("topology", "--inventory", path, "--out", str(svg))
        assert "[DOWN]" in svg.read_text()
    finally:
        subprocess.run(["docker", "start", testbed.container_name("app1")], check=True, capture_output=True)


def test_single_pattern_on_trixie_with_mariadb_11(bed, standin_release):
    path = str(bed("single", fresh=True, distro="trixie"))
    overrides = standin_release("10.11.4") + BED_SETTINGS + ["database.engine=mysql"]  # the last series on MySQL
    deploy_and_verify(path, overrides)
    assert "11.8" in on("db1", "mariadb --version")
    status = inv("db.status", "--inventory", path, *sets(overrides))
    assert re.search(r"^db1\s+primary\s+writable", status.stdout, re.M)
    assert re.search(r"^db2\s+replica\s+read-only", status.stdout, re.M)
    document = json.loads(inv("db.status", "--inventory", path, *sets(overrides), "--json").stdout)
    jsonschema.validate(document, jsonout.schema())
    roles = {n["host"]: (n["role"], n["writable"], n["streaming"]) for n in document["nodes"]}
    assert roles == {"db1": ("primary", True, False), "db2": ("replica", False, True)}
