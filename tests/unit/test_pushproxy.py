"""The push proxy component: settings and their validation (credential files that are not
there are refused before any host is touched), the steps (release, secret credential files,
config, unit), the declarations (role, balancer layer, metrics), and the rendered config run
by the push proxy stand-in on loopback, which delivers with it."""

import json
import os
import subprocess
import tarfile
import time
import urllib.request

import pytest

from mmdeploy import balancer, inventory
from mmdeploy.component import Context
from mmdeploy.components import pushproxy as pp
from mmdeploy.errors import InventoryError
from mmdeploy.ops import File
from mmdeploy.ops.secretfile import SecretFile
from mmdeploy.registry import registry
from mmdeploy.secrets import Redactor, Secrets

SITE = """\
pattern: single
settings:
  domain: chat.example.com
  pushproxy:
    sha256: "{sha}"
{push}hosts:
  - {{name: proxy1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}}
  - {{name: app1, address: 192.0.2.2, roles: [app, jobserver, monitoring, db]}}
  - {{name: push1, address: 192.0.2.3, private_address: 10.0.0.3, roles: [pushproxy]}}
  - {{name: push2, address: 192.0.2.4, private_address: 10.0.0.4, roles: [pushproxy]}}
"""


@pytest.fixture
def creds(tmp_path):
    key = tmp_path / "AuthKey_ABC.p8"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    service = tmp_path / "service.json"
    service.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "client_email": "a@p.example",
                "private_key": key.read_text(),
            }
        )
    )
    return key, service


def site_with(write_inventory, push: str, name="site.yml"):
    return write_inventory(SITE.format(sha="b" * 64, push=push), name)


def push_settings(key, service) -> str:
    return (
        f"    apple: [{{type: apple_rn, topic: com.example.chat, auth_key_file: {key}, auth_key_id: ABC,"
        f" team_id: TEAM1}}]\n    android: [{{type: android_rn, service_file: {service}}}]\n"
    )


def steps_for(inv, tmp_path, host="push1"):
    ctx = Context(inv, inv.host(host), Secrets(tmp_path / "s.yml", Redactor()), facts=None)
    return {s.name: s for s in pp.PushProxy().steps(ctx)}


def test_declarations():
    reg = registry()
    assert reg.roles["pushproxy"].min_hosts == {"multi": 2, "cluster": 2}  # optional in single
    component = reg.component("pushproxy")
    (layer,) = component.balanced
    assert (layer.name, layer.health, layer.clients) == ("pushproxy", "/version", ("app", "jobserver"))
    assert pp.release_url("6.5.0") == (
        "https://github.com/mattermost/mattermost-push-proxy/releases/download/"
        "v6.5.0/mattermost-push-proxy-linux-amd64.tar.gz"
    )


def test_balanced_endpoint_and_scrape_targets(write_inventory, creds):
    inv = inventory.load(site_with(write_inventory, push_settings(*creds)))
    assert balancer.endpoint(inv, "pushproxy") == ("10.0.0.1", 8066)  # the proxy host, no floating address
    jobs = dict(registry().scrape_jobs(inv))
    assert [h.name for h, _ in jobs["pushproxy"]] == ["push1", "push2"]
    off = inventory.load(inv.path, ["pushproxy.metrics=false"])
    assert "pushproxy" not in dict(registry().scrape_jobs(off))


def test_steps_credentials_are_secret_files_and_config_names_them(write_inventory, creds, tmp_path):
    key, service = creds
    inv = inventory.load(site_with(write_inventory, push_settings(key, service)))
    steps = steps_for(inv, tmp_path)
    names = list(steps)
    assert names[:3] == [
        "group mattermost-push-proxy",
        "user mattermost-push-proxy",
        f"release mattermost-push-proxy 6.5.0 in {pp.HOME}",
    ]
    for path, source in ((f"{pp.CREDENTIALS}/apple_rn.p8", key), (f"{pp.CREDENTIALS}/android_rn.json", service)):
        step = steps[f"file {path}"]
        assert isinstance(step, SecretFile) and (step.owner, step.mode) == ("mattermost-push-proxy", "0600")
        assert step.content == source.read_bytes() and step.notify == ("restart",)
    config = steps[f"file {pp.CONFIG}"]
    assert not isinstance(config, SecretFile) and (config.owner, config.group, config.mode) == (
        "root",
        "mattermost-push-proxy",
        "0640",
    )
    cfg = json.loads(config.content)
    assert cfg["ListenAddress"] == ":8066" and cfg["EnableMetrics"] is True
    assert cfg["ApplePushSettings"] == [
        {
            "Type": "apple_rn",
            "ApplePushUseDevelopment": False,
            "ApplePushCertPrivate": "",
            "ApplePushCertPassword": "",
            "ApplePushTopic": "com.example.chat",
            "AppleAuthKeyFile": f"{pp.CREDENTIALS}/apple_rn.p8",
            "AppleAuthKeyID": "ABC",
            "AppleTeamID": "TEAM1",
        }
    ]
    assert cfg["AndroidPushSettings"] == [
        {"Type": "android_rn", "ServiceFileLocation": f"{pp.CREDENTIALS}/android_rn.json"}
    ]
    unit = steps["file /etc/systemd/system/mattermost-push-proxy.service"].content.decode()
    assert f"ExecStart={pp.HOME}/bin/mattermost-push-proxy -config {pp.CONFIG}\n" in unit
    assert "User=mattermost-push-proxy" in unit and "PrivateTmp=true" in unit
    assert names[-1] == "service mattermost-push-proxy"
    handler = pp.PushProxy().handlers(None)["restart"]
    assert handler.script == "systemctl restart mattermost-push-proxy"


def test_without_credentials_the_proxy_still_runs(write_inventory, tmp_path):
    inv = inventory.load(site_with(write_inventory, ""))
    steps = steps_for(inv, tmp_path)
    cfg = json.loads(steps[f"file {pp.CONFIG}"].content)
    assert cfg["ApplePushSettings"] == [] and cfg["AndroidPushSettings"] == []
    assert not any(n.startswith(f"file {pp.CREDENTIALS}/") for n in steps)
    assert "service mattermost-push-proxy" in steps
    assert pp.platforms(inv.settings.pushproxy) == []


def test_a_certificate_password_makes_the_config_a_secret(write_inventory, creds, tmp_path, monkeypatch):
    key, _ = creds
    monkeypatch.setenv("MMDEPLOY_SECRET_PUSHPROXY_APPLE_CERT_PASSWORD", "cert-pass-123")
    inv = inventory.load(site_with(write_inventory, f"    apple: [{{topic: com.example.chat, cert_file: {key}}}]\n"))
    steps = steps_for(inv, tmp_path)
    config = steps[f"file {pp.CONFIG}"]
    assert isinstance(config, SecretFile) and config.mode == "0640"
    cfg = json.loads(config.content)["ApplePushSettings"][0]
    assert (
        cfg["ApplePushCertPrivate"] == f"{pp.CREDENTIALS}/apple_rn.pem"
        and cfg["ApplePushCertPassword"] == "cert-pass-123"
    )
    assert isinstance(steps[f"file {pp.CREDENTIALS}/apple_rn.pem"], SecretFile)


def test_missing_and_incomplete_credentials_are_refused_with_file_line_and_key(write_inventory, creds, tmp_path):
    key, _ = creds
    push = (
        "    apple:\n"
        f"      - {{type: apple_rn, topic: com.example.chat, auth_key_file: {key}, auth_key_id: ABC}}\n"
        "      - {type: apple, topic: com.example.old}\n"
        "    android:\n"
        "      - {type: android_rn, service_file: /nonexistent/firebase.json}\n"
        "      - {type: android_rn, service_file: /nonexistent/again.json}\n"
    )
    path = site_with(write_inventory, push, "bad.yml")
    with pytest.raises(InventoryError) as e:
        inventory.load(path)
    assert e.value.exit_code == 2
    problems = e.value.problems
    assert (
        f"{path}:7: settings.pushproxy.apple[0]: APNs token authentication needs auth_key_file, auth_key_id "
        "and team_id together" in problems
    )
    assert (
        f"{path}:8: settings.pushproxy.apple[1]: give auth_key_file with auth_key_id and team_id (APNs token), "
        "or cert_file (.pem)" in problems
    )
    assert (
        f"{path}:10: settings.pushproxy.android[0].service_file: no such file on this machine: "
        "/nonexistent/firebase.json" in problems
    )
    assert f"{path}:11: settings.pushproxy.android[1].type: app type 'android_rn' is configured twice" in problems


def test_artifact_needs_a_checksum(write_inventory):
    from mmdeploy.errors import MMDeployError

    inv = inventory.load(
        write_inventory(
            SITE.format(sha="b" * 64, push="")
            .replace('    sha256: "' + "b" * 64 + '"\n', "")
            .replace("  pushproxy:\n", "")
        )
    )
    with pytest.raises(MMDeployError, match="settings.pushproxy.sha256 is required"):
        pp.artifact(inv.settings)


def test_the_rendered_config_runs_and_delivers(write_inventory, creds, tmp_path, monkeypatch):
    """The config the component writes, with the credentials where it puts them, run by the
    push proxy stand-in (the real release's layout and config format): both apps load, a
    notification for each is delivered and counted."""
    from mmdeploy.components.mattermost import push_total
    from tests.standin import artifacts

    archive, _ = artifacts.build("pushproxy")
    with tarfile.open(archive) as t:
        t.extractall(tmp_path / "opt", filter="tar")
    home = tmp_path / "opt" / "mattermost-push-proxy-linux-amd64"
    key, service = creds
    monkeypatch.setattr(pp, "CREDENTIALS", str(tmp_path / "etc"))
    port = _free_port()
    inv = inventory.load(site_with(write_inventory, push_settings(key, service)), [f"pushproxy.port={port}"])
    steps = steps_for(inv, tmp_path)
    for step in steps.values():  # write the credential files where the deploy would upload them
        if isinstance(step, File) and step.path.startswith(str(tmp_path)):
            os.makedirs(os.path.dirname(step.path), exist_ok=True)
            with open(step.path, "wb") as f:
                f.write(step.content)
    config = home / "config" / "mattermost-push-proxy.json"
    config.write_bytes(steps[f"file {pp.CONFIG}"].content)
    proc = subprocess.Popen(
        [str(home / "bin" / "mattermost-push-proxy"), "-config", str(config)],
        env={**os.environ, "MMDEPLOY_STANDIN_PUSH_RECORD": str(tmp_path / "received.jsonl")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(url + "/version")
        for platform in ("android_rn-v2", "apple_rn-v2"):
            answer = _post(
                url + "/api/v1/send_push",
                {
                    "server_id": "s1",
                    "device_id": "tok",
                    "platform": platform,
                    "type": "message",
                    "message": "hi",
                    "post_id": "p1",
                },
            )
            assert answer == {"status": "OK"}, (platform, answer)
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            assert push_total(r.read().decode()) == 2
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert "Failed to initialize" not in out, out


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url, seconds=30):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())
