"""Inventory loading: every kind of bad input gets one clear line; precedence of settings."""

import os
import subprocess
from pathlib import Path

import pytest

from mmdeploy import inventory
from mmdeploy.errors import InventoryError

from .conftest import SINGLE

ROOT = Path(__file__).resolve().parents[2]


def problems(path, overrides=()):
    with pytest.raises(InventoryError) as e:
        inventory.load(path, overrides)
    return e.value.problems


def test_valid_inventory_loads(write_inventory):
    inv = inventory.load(write_inventory(SINGLE))
    assert inv.pattern == "single"
    assert [h.name for h in inv.hosts] == ["proxy1", "app1", "db1"]
    app = inv.host("app1")
    assert app.private_address == "10.0.0.12"
    assert inv.host("proxy1").private_address == "192.0.2.11"  # defaults to address
    assert app.roles == ("app", "jobserver", "monitoring")
    assert [h.name for h in inv.with_role("db")] == ["db1"]
    assert app.ssh.user == "root" and app.ssh.port == 22 and app.ssh.key is None
    assert app.settings.domain == "chat.example.com"
    assert inv.secrets_path.name == "site.secrets.yml"


def test_unknown_role(write_inventory):
    path = write_inventory(SINGLE.replace("roles: [db]", "roles: [db, cache]"))
    (line,) = problems(path)
    assert line.startswith(f"{path}:16: hosts[2].roles[1]: expected one of")
    assert "'cache'" in line


def test_unknown_key_suggests_the_right_one(write_inventory):
    path = write_inventory(SINGLE.replace("  domain:", "  domian:"))
    assert problems(path) == [f"{path}:5: settings.domian: unknown key (did you mean 'domain'?)"]


def test_unknown_nested_and_top_level_keys(write_inventory):
    text = SINGLE.replace("settings:\n", "setings: {}\nsettings:\n  database:\n    engin: mysql\n")
    found = problems(write_inventory(text))
    assert any(": setings: unknown key (did you mean 'settings'?)" in p for p in found)
    assert any(": settings.database.engin: unknown key (did you mean 'engine'?)" in p for p in found)


def test_wrong_type(write_inventory):
    path = write_inventory(SINGLE.replace("ssh:\n  user: root", "ssh:\n  user: root\n  port: twenty-two"))
    assert problems(path) == [f"{path}:4: ssh.port: expected an integer, got str 'twenty-two'"]


def test_wrong_value_in_settings(write_inventory):
    path = write_inventory(
        SINGLE
        + "  - name: x\n    address: 192.0.2.20\n    roles: [app]\n    vars:\n      database:\n        engine: oracle\n"
    )
    (line,) = problems(path)
    assert "hosts[3].vars.database.engine: expected one of 'postgresql' or 'mysql', got 'oracle'" in line


def test_duplicate_host_name_and_address(write_inventory):
    text = SINGLE + "  - name: app1\n    address: 192.0.2.12\n    roles: [app]\n"
    found = problems(write_inventory(text))
    assert any("hosts[3].name: duplicate host name 'app1' (also hosts[1])" in p for p in found)
    assert any("hosts[3].address: duplicate address '192.0.2.12' (also hosts[1])" in p for p in found)


def test_role_the_pattern_needs_that_no_host_has(write_inventory):
    path = write_inventory(SINGLE.replace("roles: [proxy]", "roles: [app]"))
    assert problems(path) == [f"{path}:6: hosts: pattern 'single' needs a host with role 'proxy', none has it"]


def test_too_few_hosts_for_a_role(write_inventory):
    path = write_inventory(SINGLE.replace("pattern: single", "pattern: multi"))
    found = problems(path)
    assert f"{path}:6: hosts: pattern 'multi' needs at least 2 hosts with role 'proxy', found 1" in found
    assert any("needs at least 3 hosts with role 'db', found 1" in p for p in found)
    assert any("needs a host with role 'search', none has it" in p for p in found)


def test_missing_ssh_key_file(write_inventory, tmp_path):
    path = write_inventory(SINGLE.replace("  user: root", "  user: root\n  key: keys/id_missing"))
    assert problems(path) == [f"{path}:4: ssh.key: SSH key file not found: {tmp_path / 'keys/id_missing'}"]


def test_ssh_key_relative_to_inventory_and_host_override(write_inventory, tmp_path):
    (tmp_path / "k").write_text("key")
    text = SINGLE.replace("  user: root", "  user: deploy\n  key: k").replace(
        "    roles: [db]", "    roles: [db]\n    ssh: {port: 2222, user: admin}"
    )
    inv = inventory.load(write_inventory(text))
    assert inv.host("app1").ssh.key == tmp_path / "k"
    assert (inv.host("app1").ssh.user, inv.host("app1").ssh.port) == ("deploy", 22)
    assert (inv.host("db1").ssh.user, inv.host("db1").ssh.port) == ("admin", 2222)


def test_malformed_yaml_names_the_line(write_inventory):
    path = write_inventory(SINGLE.replace("    roles: [proxy]", "    roles: [proxy"))
    (line,) = problems(path)
    assert line.startswith(f"{path}:10: malformed YAML: expected ',' or ']'")
    assert line.endswith("(while parsing a flow sequence at line 9)")


def test_duplicate_yaml_key(write_inventory):
    path = write_inventory(
        SINGLE.replace("  domain: chat.example.com", "  domain: a.example.com\n  domain: b.example.com")
    )
    assert problems(path) == [f"{path}:6: settings.domain: duplicate key (first at line 5)"]


def test_missing_file_and_not_a_mapping(tmp_path):
    assert problems(tmp_path / "nope.yml") == [f"{tmp_path / 'nope.yml'}: no such inventory file"]
    (tmp_path / "list.yml").write_text("- a\n- b\n")
    assert "expected a mapping" in problems(tmp_path / "list.yml")[0]


def test_missing_required_keys(write_inventory):
    path = write_inventory("settings: {}\n")
    found = problems(path)
    assert f"{path}:1: pattern: required key is missing" in found
    assert f"{path}:1: hosts: required key is missing" in found


def test_every_problem_reported_at_once(write_inventory):
    text = SINGLE.replace("roles: [db]", "roles: [dbs]").replace("  domain:", "  domian:")
    assert len(problems(write_inventory(text))) == 2


def test_mysql_refused_with_mattermost_11(write_inventory):
    text = SINGLE.replace("  domain: chat.example.com", "  mattermost: {version: 11.0.2}\n  database: {engine: mysql}")
    (line,) = problems(write_inventory(text))
    assert "settings.database.engine: mysql is not supported by Mattermost 11.0.2" in line
    ok = SINGLE.replace("  domain: chat.example.com", "  mattermost: {version: 10.11.4}\n  database: {engine: mysql}")
    assert inventory.load(write_inventory(ok, "ok.yml")).settings.database.engine == "mysql"


def test_precedence_defaults_pattern_settings_hostvars_cli(write_inventory):
    text = SINGLE.replace(
        "  domain: chat.example.com", "  domain: chat.example.com\n  demo: {port: 9000, message: site}"
    )
    text = text.replace("    roles: [db]", "    roles: [db]\n    vars:\n      demo: {port: 9100}")
    path = write_inventory(text)
    inv = inventory.load(path)
    proxy, db = inv.host("proxy1").settings, inv.host("db1").settings
    assert proxy.demo.enabled is False  # built-in default
    assert proxy.expected_users == 2000  # pattern default (single)
    assert (proxy.demo.port, proxy.demo.message) == (9000, "site")  # inventory settings
    assert (db.demo.port, db.demo.message) == (9100, "site")  # host vars deep-merged
    inv = inventory.load(path, ["demo.port=9200", "expected_users=500"])
    assert inv.host("db1").settings.demo.port == 9200  # CLI beats host vars
    assert inv.host("proxy1").settings.expected_users == 500  # CLI beats pattern default
    assert inv.settings.demo.port == 9200


def test_pattern_defaults_differ(write_inventory, tmp_path):
    many = SINGLE.replace("pattern: single", "pattern: multi")
    for i, role in enumerate(
        ["proxy", "app", "db", "db", "search", "search", "storage", "storage", "pushproxy", "pushproxy"]
    ):
        many += f"  - name: h{i}\n    address: 192.0.2.{100 + i}\n    roles: [{role}]\n"
    assert inventory.load(write_inventory(many)).settings.expected_users == 10000


def test_bad_cli_overrides():
    with pytest.raises(InventoryError) as e:
        inventory.load(ROOT / "hosts" / "single.yml", ["novalue"])
    assert e.value.problems == ["--set: expected key.path=value, got 'novalue'"]


def test_cli_override_checked_like_a_layer(write_inventory):
    assert problems(write_inventory(SINGLE), ["demo.prot=1"]) == [
        "--set: demo.prot: unknown key (did you mean 'port'?)"
    ]
    assert problems(write_inventory(SINGLE), ["demo.port=high"]) == [
        "--set: demo.port: expected an integer, got str 'high'"
    ]


def test_pattern_means_hosts_file():
    assert inventory.inventory_path("multi", None, Path("hosts")) == Path("hosts/multi.yml")
    assert inventory.inventory_path("multi", "x.yml") == Path("x.yml")
    with pytest.raises(InventoryError):
        inventory.inventory_path(None, None)


@pytest.mark.parametrize("name", ["single", "multi", "cluster"])
def test_shipped_example_inventories_are_valid(name):
    inv = inventory.load(ROOT / "hosts" / f"{name}.yml")
    assert inv.pattern == name


def test_cli_exits_2_on_bad_input_before_contacting_hosts(write_inventory):
    # 192.0.2.0/24 is TEST-NET-1: nothing answers there, and nothing may be contacted anyway.
    path = write_inventory(SINGLE.replace("roles: [db]", "roles: [dbx]"))
    env = {**os.environ, "MMDEPLOY_RUN_DIR": str(path.parent / "runs")}
    p = subprocess.run(["inv", "plan", "--inventory", str(path)], cwd=ROOT, capture_output=True, text=True, env=env)
    assert p.returncode == 2, p.stderr
    assert "hosts[2].roles[0]: expected one of" in p.stderr
    assert not (path.parent / "runs").exists()  # no run started, no host contacted
