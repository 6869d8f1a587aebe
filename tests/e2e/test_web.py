"""NGINX and monitoring on the test bed, with only their own components: the demo component
stands in for a Mattermost app server on app1:8065 (it serves a static page), so the proxy,
its TLS and its limits can be checked from the control machine. Mattermost's own metrics
targets stay down here (no app server), so the Prometheus test looks at the exporters."""

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

import mmdeploy

from .conftest import ROOT, inv, on

pytestmark = pytest.mark.e2e
# The exporters belong to the services they watch: the postgres exporter comes with PostgreSQL.
ONLY = (
    "--only",
    "base,nginx,node-exporter,postgresql,postgresql-replication,prometheus",
    "--set",
    "monitoring.grafana=false",
    "--set",
    "database.memory_mb=1024",
)
BODY = Path("/tmp/mmdeploy-e2e-60M.bin")


def totals(output: str) -> tuple[int, int]:
    (total,) = re.findall(r"^total\s+\d+\s+(\d+)\s+(\d+)", output, re.M)
    return int(total[0]), int(total[1])


@pytest.fixture(scope="module")
def web(bed):
    path = str(bed("single", fresh=True))
    inv(
        "deploy",
        "--inventory",
        path,
        "--only",
        "base,demo",
        "--limit",
        "app1",
        "--set",
        "demo.enabled=true",
        "--set",
        "demo.port=8065",
        "--yes",
    )
    t0 = time.monotonic()
    first = inv("deploy", "--inventory", path, *ONLY, "--yes")
    print(f"\ncold deploy of base,nginx,exporters,PostgreSQL,prometheus: {time.monotonic() - t0:.1f}s")
    hosts = {h.name: h for h in mmdeploy.load(path).hosts}
    return path, first, hosts


@pytest.fixture(scope="module")
def proxy(web):
    return web[2]["proxy1"].address


def curl(*args: str) -> str:
    return subprocess.run(["curl", "-s", "--max-time", "20", *args], capture_output=True, text=True).stdout


def reloads() -> int:
    return int(on("proxy1", "journalctl -q -u nginx --no-pager | grep -c 'Reloaded nginx' || true"))


def nginx_pid() -> str:
    return on("proxy1", "cat /run/nginx.pid").strip()


def test_http_redirects_to_https(proxy):
    head = curl("-I", f"http://{proxy}/")
    assert head.startswith("HTTP/1.1 301"), head
    assert re.search(r"^Location: https://mm\.testbed\.local/\r?$", head, re.M), head


def test_https_answers_over_http2_with_hsts_through_nginx(proxy):
    head = curl("--http2", "-k", "-I", f"https://{proxy}/")
    assert head.startswith("HTTP/2 200"), head
    assert re.search(r"^strict-transport-security: max-age=63072000\r?$", head, re.M), head
    assert "mmdeploy demo" in curl("--http2", "-k", f"https://{proxy}/")  # from app1:8065


def test_client_max_body_size_enforced(proxy):
    with open(BODY, "wb") as f:
        f.truncate(60 * 1024 * 1024)
    status = curl(
        "--http2",
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        f"@{BODY}",
        f"https://{proxy}/api/v4/files",
    )
    assert status == "413"
    small = curl(
        "--http2",
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        "x=1",
        f"https://{proxy}/api/v4/files",
    )
    assert small not in ("413", "000")


def test_second_deploy_changes_nothing(web):
    path, _, _ = web
    t0 = time.monotonic()
    again = inv("deploy", "--inventory", path, *ONLY, "--yes")
    print(f"\nno-op re-deploy: {time.monotonic() - t0:.1f}s")
    assert totals(again.stdout) == (0, 0), again.stdout


def test_config_change_diffs_in_plan_and_reloads_once(web, proxy):
    path, _, _ = web
    before, pid = reloads(), nginx_pid()
    plan = inv("plan", "--inventory", path, *ONLY, "--set", "nginx.client_max_body_size=100M")
    assert "-        client_max_body_size 50M;" in plan.stdout
    assert "+        client_max_body_size 100M;" in plan.stdout
    assert re.search(r"proxy1\s+nginx\s+.*handler reload.*would run \(notified\)", plan.stdout), plan.stdout
    assert reloads() == before  # plan changed nothing
    run = inv("deploy", "--inventory", path, *ONLY, "--set", "nginx.client_max_body_size=100M", "--yes")
    assert totals(run.stdout)[0] == 2, run.stdout  # the config file and the reload
    assert reloads() == before + 1
    assert nginx_pid() == pid  # reloaded, not restarted
    assert "client_max_body_size 100M;" in on("proxy1", "cat /etc/nginx/nginx.conf")
    status = curl(
        "--http2",
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        f"@{BODY}",
        f"https://{proxy}/api/v4/files",
    )
    assert status != "413"
    inv("deploy", "--inventory", path, *ONLY, "--yes")
    assert reloads() == before + 2


def test_invalid_config_is_refused_and_the_live_one_stays(web, proxy):
    path, _, _ = web
    live = on("proxy1", "sha256sum /etc/nginx/nginx.conf")
    before = reloads()
    run = inv("deploy", "--inventory", path, *ONLY, "--set", "nginx.extra=bogus_directive on;", "--yes", check=False)
    assert run.returncode == 1
    assert re.search(r"^proxy1: FAILED: nginx / file /etc/nginx/nginx.conf: .*validation failed", run.stdout, re.M), (
        run.stdout
    )
    assert 'unknown directive "bogus_directive"' in run.stdout
    assert on("proxy1", "sha256sum /etc/nginx/nginx.conf") == live
    assert reloads() == before
    assert curl("--http2", "-k", "-o", "/dev/null", "-w", "%{http_code}", f"https://{proxy}/") == "200"
    # A value that is not an nginx size never reaches a host: bad input, exit 2.
    bad = inv("plan", "--inventory", path, *ONLY, "--set", "nginx.client_max_body_size=bogus", check=False)
    assert bad.returncode == 2 and "nginx.client_max_body_size" in bad.stderr


def test_sslyze_finds_only_mozilla_intermediate_tls(web, proxy):
    from sslyze import ScanCommand, Scanner, ServerNetworkLocation, ServerScanRequest
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )

    scanner = Scanner()
    scanner.queue_scans(
        [
            ServerScanRequest(
                server_location=ServerNetworkLocation("mm.testbed.local", 443, ip_address=proxy),
                scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER | {ScanCommand.HTTP_HEADERS},
            )
        ]
    )
    (result,) = scanner.get_results()
    scan = result.scan_result
    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        assert not getattr(scan, f"{old}_cipher_suites").result.is_tls_version_supported, old
    assert scan.tls_1_2_cipher_suites.result.is_tls_version_supported
    assert scan.tls_1_3_cipher_suites.result.is_tls_version_supported
    intermediate = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    accepted = {c.cipher_suite.name for c in scan.tls_1_2_cipher_suites.result.accepted_cipher_suites}
    print(f"\nTLS 1.2 suites accepted: {sorted(accepted)}")
    assert accepted and accepted <= intermediate.ciphers.iana
    try:
        check_server_against_tls_configuration(result, intermediate)
        issues = {}
    except ServerNotCompliantWithTlsConfiguration as e:
        issues = e.issues
    # The self-signed certificate cannot chain to a trusted root; nothing else may be amiss
    # (versions, suites, curves, key size, lifespan, known TLS vulnerabilities).
    assert set(issues) <= {"certificate_path_validation"}, issues
    hsts = scan.http_headers.result.strict_transport_security_header
    assert hsts is not None and hsts.max_age >= 31536000
    # sslyze does not report ALPN: ask openssl for HTTP/2.
    alpn = subprocess.run(
        ["openssl", "s_client", "-connect", f"{proxy}:443", "-servername", "mm.testbed.local", "-alpn", "h2"],
        input=b"",
        capture_output=True,
        timeout=20,
    ).stdout
    # (the server's first HTTP/2 frames follow the handshake summary: not text)
    assert b"ALPN protocol: h2" in alpn


def test_verify_checks_nginx(web):
    path, _, _ = web
    run = inv("verify", "--inventory", path, "--only", "nginx")
    assert "ok   HTTP redirects to HTTPS on proxy1" in run.stdout
    assert "ok   HTTPS with TLS 1.2+, HTTP/2 and HSTS on proxy1" in run.stdout


def prometheus(address: str, api: str):
    with urllib.request.urlopen(f"http://{address}:9090/api/v1/{api}", timeout=10) as r:
        return json.load(r)["data"]


def test_prometheus_scrapes_the_exporters(web):
    _, _, hosts = web
    monitor = hosts["job1"].address
    exporters = {"node": 5, "nginx": 1, "postgres": 2, "prometheus": 1}
    deadline = time.monotonic() + 60
    while True:
        targets = prometheus(monitor, "targets?state=active")["activeTargets"]
        up = {job: sum(t["labels"]["job"] == job and t["health"] == "up" for t in targets) for job in exporters}
        if up == exporters or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert up == exporters, [(t["labels"], t["health"], t["lastError"]) for t in targets]
    # Mattermost's targets are generated (app1, job1) but down: no app server on this bed.
    mattermost = sorted(t["labels"]["host"] for t in targets if t["labels"]["job"] == "mattermost")
    assert mattermost == ["app1", "job1"]
    (nginx_up,) = prometheus(monitor, "query?query=nginx_up")["result"]
    assert nginx_up["value"][1] == "1"  # the exporter reads nginx's stub_status


def test_no_secret_in_run_logs(web):
    path, first, _ = web
    secrets = [str(v) for v in yaml.safe_load(open(path.replace(".yml", ".secrets.yml"))).values()]
    assert secrets  # db_monitoring_password at least
    (log_dir,) = re.findall(r"^run log: (\S+)", first.stdout, re.M)
    text = "".join(p.read_text() for p in (ROOT / log_dir).iterdir()) + first.stdout
    for secret in secrets:
        assert secret not in text
    key = on("proxy1", "cat /etc/nginx/tls/mattermost.key")
    assert key.split("\n")[1] not in text
    assert on("proxy1", "stat -c '%U %a' /etc/nginx/tls/mattermost.key").strip() == "root 600"
    assert (
        on("db1", "stat -c '%U:%G %a' /etc/default/prometheus-postgres-exporter").strip() == "prometheus:prometheus 640"
    )
