"""The proxy tier: keepalived's floating addresses (instances, validation with file, line
and key, the notify script run for real) and HAProxy's internal balancer for the layers
components declare as Balanced (a fake component declares them here)."""

import re
import subprocess

import pytest
import yaml

import mmdeploy.registry as registry_module
from mmdeploy import inventory
from mmdeploy.component import Balanced, Component, Context
from mmdeploy.components.haproxy import Haproxy, layers, server_states
from mmdeploy.components.haproxy import render as render_haproxy
from mmdeploy.components.keepalived import CONF, Keepalived, instances
from mmdeploy.components.prometheus import scrape_jobs
from mmdeploy.errors import InventoryError, StepFailed
from mmdeploy.facts import Fact
from mmdeploy.ops import File, Sysctl
from mmdeploy.secrets import Redactor, Secrets

SITE = """\
pattern: cluster
settings:
  domain: chat.example.com
  proxy:
    vip: [10.0.0.100/24, 10.0.0.101/24]
hosts:
  - {name: lb1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}
  - {name: lb2, address: 192.0.2.2, private_address: 10.0.0.2, roles: [proxy]}
  - {name: app1, address: 192.0.2.11, private_address: 10.0.0.11, roles: [app]}
  - {name: app2, address: 192.0.2.12, private_address: 10.0.0.12, roles: [app]}
  - {name: app3, address: 192.0.2.13, private_address: 10.0.0.13, roles: [app]}
  - {name: job1, address: 192.0.2.21, private_address: 10.0.0.21, roles: [jobserver, monitoring]}
  - {name: db1, address: 192.0.2.31, private_address: 10.0.0.31, roles: [db]}
  - {name: db2, address: 192.0.2.32, private_address: 10.0.0.32, roles: [db]}
  - {name: db3, address: 192.0.2.33, private_address: 10.0.0.33, roles: [db]}
  - {name: s1, address: 192.0.2.41, private_address: 10.0.0.41, roles: [search, storage, pushproxy]}
  - {name: s2, address: 192.0.2.42, private_address: 10.0.0.42, roles: [search, storage, pushproxy]}
  - {name: s3, address: 192.0.2.43, private_address: 10.0.0.43, roles: [search, storage]}
  - {name: s4, address: 192.0.2.44, private_address: 10.0.0.44, roles: [storage]}
"""


# No layer behind the internal balancer (no storage, search or push hosts): no HAProxy.
NO_LAYER = """\
pattern: single
settings:
  domain: chat.example.com
  proxy: {vip: 10.0.0.100/24}
hosts:
  - {name: lb1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}
  - {name: lb2, address: 192.0.2.2, private_address: 10.0.0.2, roles: [proxy]}
  - {name: app1, address: 192.0.2.11, private_address: 10.0.0.11, roles: [app, jobserver, monitoring, db]}
"""


class FakeSearch(Component):
    """A layer served on several hosts, as the search component will declare it."""

    name = "fake-search"
    roles = ("search",)
    balanced = (Balanced("search", 9200, "/_cluster/health"),)


class FakePush(Component):
    """A layer with no health path: checked with a TCP connect; only app servers may use it.
    (The real layers all declare an HTTP health path: this one stands for a TCP layer.)"""

    name = "fake-tcp"
    roles = ("pushproxy",)
    balanced = (Balanced("tcp-demo", 8099, clients=("app",)),)


@pytest.fixture
def with_layers(monkeypatch):
    """The registry with the fake balanced layers added where no real component serves
    them yet (as the real components will)."""
    real = registry_module.registry()
    served = {b.name for c in real.components for b in c.balanced}
    extra = [c for c in (FakeSearch(), FakePush()) if not {b.name for b in c.balanced} & served]
    fake = registry_module.build([*real.components, *extra], real.template_dirs)
    monkeypatch.setattr(registry_module, "registry", lambda: fake)
    return fake


class Facts:
    """Facts as the host would answer them: the interface holding the private address."""

    def __init__(self, interface="ens3"):
        self.interface = interface
        self.asked: list[str] = []

    def get(self, commands):
        self.asked += list(commands)
        return {c: Fact(0, f"{self.interface}\n" if self.interface else "") for c in commands}


@pytest.fixture
def site(write_inventory, tmp_path):
    def load(*overrides, host="lb1", text=SITE, facts=None):
        inv = inventory.load(write_inventory(text), overrides)
        return Context(inv, inv.host(host), Secrets(tmp_path / "s.yml", Redactor()), facts or Facts())

    return load


def keepalived_conf(ctx) -> str:
    (conf,) = [s for s in Keepalived().steps(ctx) if isinstance(s, File) and s.path == CONF]
    return conf.content.decode()


def instance_block(conf: str, name: str) -> str:
    start = conf.index(f"vrrp_instance {name} {{")
    return conf[start : conf.index("\n}\n", start)]


def load_problems(path, overrides=()) -> list[str]:
    with pytest.raises(InventoryError) as e:
        inventory.load(path, overrides)
    return e.value.problems


# --- keepalived: instances and configuration ---------------------------------------------


def test_two_addresses_are_active_active(site):
    lb1, lb2 = site(host="lb1"), site(host="lb2")
    assert [(i.name, i.router_id, i.vip, i.priority, i.peers) for i in instances(lb1.inventory, lb1.host)] == [
        ("mm_vip1", 51, "10.0.0.100/24", 250, ("10.0.0.2",)),
        ("mm_vip2", 52, "10.0.0.101/24", 50, ("10.0.0.2",)),
    ]
    # Each proxy is the preferred holder of one address and the backup of the other.
    assert [(i.name, i.priority, i.peers) for i in instances(lb2.inventory, lb2.host)] == [
        ("mm_vip1", 50, ("10.0.0.1",)),
        ("mm_vip2", 250, ("10.0.0.1",)),
    ]


def test_keepalived_conf_unicast_backup_nopreempt_tracked(site):
    conf = keepalived_conf(site())
    assert "vrrp_version 3" in conf and "enable_script_security" in conf
    assert "script_user keepalived_script" in conf
    assert "mcast" not in conf  # never multicast
    vip1 = instance_block(conf, "mm_vip1")
    for line in (
        "state BACKUP",
        "interface ens3",
        "virtual_router_id 51",
        "priority 250",
        "advert_int 0.5",
        "nopreempt",
        "unicast_src_ip 10.0.0.1",
        "check_unicast_src",
        "10.0.0.100/24 dev ens3",
    ):
        assert re.search(rf"^\s+{re.escape(line)}$", vip1, re.M), line
    assert re.search(r"unicast_peer \{\n\s+10\.0\.0\.2\n\s+\}", vip1)
    # The storage hosts' S3 layer is balanced by HAProxy here: tracked too.
    assert re.search(r"track_script \{\n\s+chk_nginx\n\s+chk_haproxy\n\s+\}", vip1)
    assert "state MASTER" not in conf  # nopreempt needs BACKUP everywhere
    for state in ("MASTER", "BACKUP", "FAULT", "STOP"):
        assert f'notify_{state.lower()} "/etc/keepalived/mmdeploy-notify mm_vip1 10.0.0.100 {state}" root' in vip1
    # The track script: no weight, so a failure is FAULT (gives the address away).
    chk = conf[conf.index("vrrp_script chk_nginx {") :]
    chk = chk[: chk.index("}")]
    assert "weight" not in chk.replace("# No weight", "")
    assert "interval 1" in chk and "fall 2" in chk and "rise 2" in chk


def test_keepalived_steps(site):
    ctx = site()
    steps = Keepalived().steps(ctx)
    names = [s.name for s in steps]
    conf = next(s for s in steps if isinstance(s, File) and s.path == CONF)
    assert "keepalived -t -f" in conf.validate and conf.notify == ("reload",)
    assert names[0] == "packages keepalived curl" and names[-1] == "enable keepalived"
    # Started by keepalived-start, after every proxy is configured (the runner's barrier).
    start = registry_module.registry().component("keepalived-start")
    assert start.after == ("keepalived",) and [s.name for s in start.steps(ctx)] == ["service keepalived"]
    assert [h.name for h in start.hosts(ctx.inventory)] == ["lb1", "lb2"]
    assert Keepalived().handlers(ctx)["reload"].script == "systemctl try-reload-or-restart keepalived"
    # The scripts the configuration names exist before it is validated and loaded.
    for script in ("mmdeploy-check-nginx", "mmdeploy-notify"):
        step = next(s for s in steps if isinstance(s, File) and s.path.endswith(script))
        assert step.mode == "0755" and step.owner == "root" and names.index(step.name) < names.index(conf.name)
    check = next(s for s in steps if isinstance(s, File) and s.path.endswith("mmdeploy-check-nginx"))
    assert "curl -fsk --max-time 1 -o /dev/null https://127.0.0.1/mmdeploy-proxy-health" in check.content.decode()
    assert "file /etc/keepalived/mmdeploy-check-haproxy" in names


def test_without_haproxy_only_nginx_is_tracked(site):
    ctx = site(text=NO_LAYER)
    conf = keepalived_conf(ctx)
    assert re.search(r"track_script \{\n\s+chk_nginx\n\s+\}", instance_block(conf, "mm_vip1"))
    assert "chk_haproxy" not in conf
    names = [s.name for s in Keepalived().steps(ctx)]
    assert "remove /etc/keepalived/mmdeploy-check-haproxy" in names  # a former HAProxy check goes
    assert "file /etc/keepalived/mmdeploy-check-haproxy" not in names


def test_one_address_and_host_priorities(site):
    text = SITE.replace("vip: [10.0.0.100/24, 10.0.0.101/24]", "vip: 10.0.0.100/24").replace(
        "{name: lb2,", "{name: lb2, vars: {proxy: {priority: 200}},"
    )
    lb1, lb2 = site(text=text, host="lb1"), site(text=text, host="lb2")
    assert [(i.vip, i.priority) for i in instances(lb1.inventory, lb1.host)] == [("10.0.0.100/24", 250)]
    assert [(i.vip, i.priority) for i in instances(lb2.inventory, lb2.host)] == [("10.0.0.100/24", 200)]
    conf = keepalived_conf(site("proxy.nopreempt=false", "proxy.advert_int=1", "proxy.virtual_router_id=7", text=text))
    assert not re.search(r"^\s+nopreempt$", conf, re.M)
    assert "advert_int 1\n" in conf and "virtual_router_id 7" in conf
    assert "state BACKUP" in conf


def test_interface_from_the_private_address_or_the_setting(site):
    facts = Facts("eth1")
    conf = keepalived_conf(site(facts=facts))
    assert "interface eth1" in conf and "10.0.0.100/24 dev eth1" in conf
    (probe,) = facts.asked
    assert '"10.0.0.1"' in probe and "ip -o addr show" in probe
    assert "interface bond0" in keepalived_conf(site("proxy.interface=bond0"))
    with pytest.raises(StepFailed, match="no interface on lb1 holds its private address 10.0.0.1"):
        keepalived_conf(site(facts=Facts("")))


def test_no_address_no_keepalived(site):
    ctx = site(text=SITE.replace("  proxy:\n    vip: [10.0.0.100/24, 10.0.0.101/24]\n", ""))
    assert Keepalived().hosts(ctx.inventory) == []
    assert Keepalived().checks(ctx.inventory) == []
    assert [h.name for h in Keepalived().hosts(site().inventory)] == ["lb1", "lb2"]


def test_vips_property():
    from mmdeploy.components.keepalived import ProxySettings

    assert ProxySettings().vips == []
    assert ProxySettings(vip="10.0.0.5/24").vips == ["10.0.0.5/24"]
    assert ProxySettings(vip=["10.0.0.5/24", "10.0.0.6/24"]).vips == ["10.0.0.5/24", "10.0.0.6/24"]


# --- keepalived: validation (exit 2, file:line: key: problem) ------------------------------


def test_vip_outside_the_proxies_network(write_inventory):
    path = write_inventory(SITE.replace("10.0.0.101/24", "10.0.1.101/24"))
    assert load_problems(path) == [
        f"{path}:7: hosts[0].private_address: lb1's private address 10.0.0.1 is outside 10.0.1.0/24, the network "
        "of proxy.vip 10.0.1.101/24: the proxies and their floating addresses share one network",
        f"{path}:8: hosts[1].private_address: lb2's private address 10.0.0.2 is outside 10.0.1.0/24, the network "
        "of proxy.vip 10.0.1.101/24: the proxies and their floating addresses share one network",
    ]


def test_vip_equal_to_a_host_address(write_inventory):
    path = write_inventory(SITE.replace("10.0.0.101/24", "10.0.0.11/24"))
    assert load_problems(path) == [
        f"{path}:5: settings.proxy.vip[1]: 10.0.0.11 is the private address of host app1; "
        "a floating address must belong to no host"
    ]


def test_malformed_addresses(write_inventory):
    for bad, why in (
        ("10.0.0.300/24", "expected an IPv4 address with its prefix, e.g. 10.0.0.100/24, got '10.0.0.300/24'"),
        ("10.0.0.101", "expected an IPv4 address with its prefix, e.g. 10.0.0.100/24, got '10.0.0.101'"),
        ("fd00::5/64", "expected an IPv4 address with its prefix, e.g. 10.0.0.100/24, got 'fd00::5/64'"),
        ("10.0.0.255/24", "10.0.0.255 is the broadcast address of 10.0.0.0/24, not a host address"),
        ("10.0.0.100/24", "10.0.0.100 is listed twice"),
    ):
        path = write_inventory(SITE.replace("10.0.0.101/24", bad))
        assert load_problems(path) == [f"{path}:5: settings.proxy.vip[1]: {why}"], bad


def test_router_id_out_of_range(write_inventory):
    path = write_inventory(SITE.replace("    vip:", "    virtual_router_id: 255\n    vip:"))
    assert load_problems(path) == [
        f"{path}:5: settings.proxy.virtual_router_id: 2 addresses use router ids 255..256; "
        "expected at most 255 (use at most 254)"
    ]
    path = write_inventory(SITE.replace("    vip:", "    virtual_router_id: 0\n    vip:"))
    (line,) = load_problems(path)
    assert line.startswith(f"{path}:5: settings.proxy.virtual_router_id: input should be greater than or equal to 1")


def test_too_few_proxies(write_inventory):
    single = """\
pattern: single
settings:
  proxy: {vip: 10.0.0.100/24}
hosts:
  - {name: proxy1, address: 10.0.0.1, roles: [proxy]}
  - {name: app1, address: 10.0.0.2, roles: [app, jobserver, monitoring, db]}
"""
    path = write_inventory(single)
    assert load_problems(path) == [
        f"{path}:4: hosts: proxy.vip: 1 floating address(es) need at least 2 hosts with role 'proxy' "
        "(one to hold each, and one to take over), found 1"
    ]


def test_vip_is_site_wide_and_priorities_differ(write_inventory):
    path = write_inventory(
        SITE.replace("{name: lb2,", "{name: lb2, vars: {proxy: {vip: 10.0.0.102/24, priority: 250}},")
    )
    assert load_problems(path) == [
        f"{path}:8: hosts[1].vars.proxy.vip: proxy.vip is one for the whole site: set it under settings:, "
        "not in a host's vars",
        f"{path}:7: hosts[0]: lb1's default priority 250 equals lb2's: give lb1 a proxy.priority of its own in its vars",
    ]
    path = write_inventory(
        SITE.replace("{name: lb2,", "{name: lb2, vars: {proxy: {priority: 7}},").replace(
            "{name: lb1,", "{name: lb1, vars: {proxy: {priority: 7}},"
        )
    )
    assert load_problems(path) == [
        f"{path}:8: hosts[1].vars.proxy.priority: priority 7 is also lb1's; the priorities order the proxies "
        "and must differ"
    ]


def test_proxy_private_address_must_be_an_ip(write_inventory):
    path = write_inventory(SITE.replace("private_address: 10.0.0.2,", "private_address: lb2.internal,"))
    found = load_problems(path)
    assert (
        f"{path}:8: hosts[1].private_address: expected an IP address for a proxy with proxy.vip "
        "(its VRRP peers' source), got 'lb2.internal'"
    ) in found


# --- keepalived: the notify script, run for real --------------------------------------------


def test_notify_writes_the_textfile_and_counts_transitions(site, tmp_path):
    ctx = site()
    textfile, state = tmp_path / "textfile", tmp_path / "state"
    script = tmp_path / "notify"
    script.write_text(ctx.render("keepalived/notify.sh.j2", state_dir=str(state), textfile_dir=str(textfile)))
    script.chmod(0o755)
    for s in ("BACKUP", "MASTER"):
        subprocess.run([str(script), "mm_vip1", "10.0.0.100", s], check=True, timeout=10)
    subprocess.run([str(script), "mm_vip2", "10.0.0.101", "FAULT"], check=True, timeout=10)
    vip1 = (textfile / "keepalived_mm_vip1.prom").read_text()
    assert 'keepalived_vrrp_state{instance="mm_vip1",vip="10.0.0.100"} 2\n' in vip1
    assert 'keepalived_vrrp_transitions_total{instance="mm_vip1",vip="10.0.0.100"} 2\n' in vip1
    assert "# TYPE keepalived_vrrp_transitions_total counter" in vip1
    vip2 = (textfile / "keepalived_mm_vip2.prom").read_text()
    assert 'keepalived_vrrp_state{instance="mm_vip2",vip="10.0.0.101"} 3\n' in vip2
    assert not list(textfile.glob(".keepalived_*"))  # written atomically, nothing left behind


# --- HAProxy: the balanced layers ------------------------------------------------------------


def test_no_balanced_layer_no_haproxy(site):
    ctx = site(text=NO_LAYER)
    assert Haproxy().hosts(ctx.inventory) == []
    assert "haproxy" not in [j.name for j in scrape_jobs(ctx.inventory, ctx.host)]


def test_balanced_layers_derive_haproxy_and_its_scrape_job(site, with_layers):
    ctx = site()
    found = {b.name: [h.name for h in hosts] for b, hosts in with_layers.balanced_layers(ctx.inventory)}
    assert found == {
        "storage": ["s1", "s2", "s3", "s4"],
        "search": ["s1", "s2", "s3"],
        "pushproxy": ["s1", "s2"],
        "tcp-demo": ["s1", "s2"],
        "postgresql": ["db1", "db2", "db3"],
        "postgresql-replicas": ["db1", "db2", "db3"],
    }
    assert [h.name for h in Haproxy().hosts(ctx.inventory)] == ["lb1", "lb2"]
    jobs = {j.name: [t.address for t in j.targets] for j in scrape_jobs(ctx.inventory, ctx.host)}
    assert jobs["haproxy"] == ["10.0.0.1:8405", "10.0.0.2:8405"]
    # keepalived now also tracks HAProxy.
    conf = keepalived_conf(ctx)
    assert re.search(r"track_script \{\n\s+chk_nginx\n\s+chk_haproxy\n\s+\}", instance_block(conf, "mm_vip2"))
    check = next(s for s in Keepalived().steps(ctx) if getattr(s, "path", "").endswith("mmdeploy-check-haproxy"))
    assert "http://127.0.0.1:8405/healthz" in check.content.decode()


def section(conf: str, head: str) -> str:
    start = re.search(rf"^{re.escape(head)}$", conf, re.M).start()
    end = conf.find("\n\n", start)
    return conf[start : end if end > 0 else len(conf)]


def test_haproxy_frontends_on_every_vip_for_their_clients_only(site, with_layers):
    conf = render_haproxy(site())
    search = section(conf, "frontend search")
    assert re.findall(r"bind (\S+)", search) == ["10.0.0.100:9200", "10.0.0.101:9200"]
    assert "tcp-request connection reject unless { src 10.0.0.11 10.0.0.12 10.0.0.13 10.0.0.21 }" in search
    assert "mode http" in search and "default_backend search" in search
    push = section(conf, "frontend pushproxy")  # components/pushproxy.py: app and job servers
    assert "tcp-request connection reject unless { src 10.0.0.11 10.0.0.12 10.0.0.13 10.0.0.21 }" in push
    tcp = section(conf, "frontend tcp-demo")
    assert "tcp-request connection reject unless { src 10.0.0.11 10.0.0.12 10.0.0.13 }" in tcp  # app only
    assert "mode tcp" in tcp


def test_haproxy_backends_checked_balanced_retried(site, with_layers):
    conf = render_haproxy(site())
    search = section(conf, "backend search")
    assert "balance leastconn" in search and "option httpchk GET /_cluster/health" in search
    assert re.findall(r"server (\S+) (\S+) check", search) == [
        ("s1", "10.0.0.41:9200"),
        ("s2", "10.0.0.42:9200"),
        ("s3", "10.0.0.43:9200"),
    ]
    push = section(conf, "backend pushproxy")
    assert "option httpchk GET /version" in push
    tcp = section(conf, "backend tcp-demo")
    assert "httpchk" not in tcp and "mode tcp" in tcp  # a TCP check
    defaults = section(conf, "defaults")
    for line in (
        "retries 2",
        "option redispatch 1",
        "timeout connect 2s",
        "timeout server 60s",
        "default-server inter 2s fall 2 rise 2",
    ):
        assert line in defaults
    conf = render_haproxy(site("haproxy.check_interval=500ms", "haproxy.timeout_server=5m"))
    assert "default-server inter 500ms fall 2 rise 2" in conf and "timeout server 5m" in conf


def test_haproxy_stats_for_monitoring_hosts_only(site, with_layers):
    stats = section(render_haproxy(site(host="lb2")), "frontend stats")
    assert re.findall(r"bind (\S+)", stats) == ["10.0.0.2:8405", "127.0.0.1:8405"]
    assert "tcp-request connection reject unless { src 127.0.0.1 10.0.0.21 }" in stats
    assert "http-request use-service prometheus-exporter if { path /metrics }" in stats
    assert 'http-request return status 200 content-type text/plain string "ok" if { path /healthz }' in stats
    assert stats.rstrip().endswith("no log") and "http-request deny" in stats


def test_haproxy_steps_validate_and_reload(site, with_layers):
    ctx = site()
    steps = Haproxy().steps(ctx)
    conf = next(s for s in steps if isinstance(s, File))
    assert conf.path == "/etc/haproxy/haproxy.cfg"
    assert conf.validate == "haproxy -c -q -f {}" and conf.notify == ("reload",)
    reload = Haproxy().handlers(ctx)["reload"].script
    # After the reload, one round of checks (2 s interval + 2 s check timeout) before any
    # client is restarted: new workers take every server as up until checked.
    assert reload.endswith("systemctl reload-or-restart haproxy && sleep 4")
    # It binds floating addresses it may not hold, and it answers before keepalived asks.
    (sysctl,) = [s for s in steps if isinstance(s, Sysctl)]
    assert (sysctl.key, sysctl.value) == ("net.ipv4.ip_nonlocal_bind", "1")
    assert steps.index(sysctl) < steps.index(conf)
    assert "haproxy" in Keepalived.after and "keepalived" not in Haproxy.after


def test_without_vip_haproxy_listens_on_the_proxy_itself(site, with_layers):
    text = SITE.replace("  proxy:\n    vip: [10.0.0.100/24, 10.0.0.101/24]\n", "")
    ctx = site(text=text, host="lb2")
    binds = {layer.name: layer.binds for layer in layers(ctx.inventory, ctx.host)}
    assert binds == {
        "storage": ("10.0.0.2:8333",),
        "search": ("10.0.0.2:9200",),
        "pushproxy": ("10.0.0.2:8066",),
        "tcp-demo": ("10.0.0.2:8099",),
        "postgresql": ("10.0.0.2:5432",),
        "postgresql-replicas": ("10.0.0.2:5433",),
    }
    assert not [s for s in Haproxy().steps(ctx) if isinstance(s, Sysctl)]  # only local addresses


def test_client_on_a_proxy_reaches_it_from_the_vip(site, with_layers):
    text = SITE.replace(
        "{name: lb1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy]}",
        "{name: lb1, address: 192.0.2.1, private_address: 10.0.0.1, roles: [proxy, app]}",
    )
    ctx = site(text=text)
    search = next(layer for layer in layers(ctx.inventory, ctx.host) if layer.name == "search")
    assert search.clients == (
        "10.0.0.1",
        "10.0.0.11",
        "10.0.0.12",
        "10.0.0.13",
        "10.0.0.21",
        "10.0.0.100",
        "10.0.0.101",
    )


def test_server_states_from_haproxy_metrics():
    metrics = """\
# TYPE haproxy_server_status gauge
haproxy_server_status{proxy="search",server="s1",state="DOWN"} 0
haproxy_server_status{proxy="search",server="s1",state="UP"} 1
haproxy_server_status{proxy="search",server="s2",state="DOWN"} 1
haproxy_server_status{proxy="search",server="s2",state="UP"} 0
haproxy_backend_status{proxy="search",state="UP"} 1
"""
    assert server_states(metrics) == {("search", "s1"): True, ("search", "s2"): False}


# --- the test bed's inventory ------------------------------------------------------------


def test_bed_inventory_gets_floating_addresses(tmp_path):
    from mmdeploy.testbed import GATEWAY, layout, write_inventory

    net = GATEWAY.rsplit(".", 1)[0]
    key = tmp_path / "id"
    key.write_text("key\n")
    for pattern, vips in (("multi", f"{net}.100/24"), ("cluster", [f"{net}.100/24", f"{net}.101/24"])):
        path = write_inventory(tmp_path / f"{pattern}.yml", layout(pattern), pattern, key, None)
        assert yaml.safe_load(path.read_text())["settings"]["proxy"] == {"vip": vips}
        inv = inventory.load(path)  # valid on its own: the addresses are in the bed's network
        assert inv.settings.proxy.vips == (vips if isinstance(vips, list) else [vips])
    # A single-pattern layout with two proxies (test_upgrade's apps3) gets one address.
    path = write_inventory(tmp_path / "apps3.yml", layout("apps3"), "single", key, None)
    assert yaml.safe_load(path.read_text())["settings"]["proxy"] == {"vip": f"{net}.100/24"}
    assert inventory.load(path).settings.proxy.vips == [f"{net}.100/24"]
    path = write_inventory(tmp_path / "single.yml", layout("single"), "single", key, None)
    assert "proxy" not in yaml.safe_load(path.read_text())["settings"]


def test_sysctl_persists_without_writing_an_equal_live_value():
    """A container's /proc/sys is read-only: a value already live is only persisted."""

    class Recorder:
        def __init__(self):
            self.scripts: list[str] = []

        def run(self, script, **kw):
            from mmdeploy.remote import Result

            self.scripts.append(script)
            return Result(0, "", "")

    step, remote = Sysctl("net.ipv4.ip_nonlocal_bind", 1), Recorder()
    (probe,) = step.facts()
    change = step.check({probe: Fact(0, "1\n|\n")})
    assert change.summary == "persist in /etc/sysctl.d/60-mmdeploy-net.ipv4.ip_nonlocal_bind.conf"
    step.apply(remote, change)
    assert "sysctl -q -w" not in remote.scripts[-1] and "/etc/sysctl.d/" in remote.scripts[-1]
    change = step.check({probe: Fact(0, "0\n|\n")})
    step.apply(remote, change)
    assert "sysctl -q -w net.ipv4.ip_nonlocal_bind=1" in remote.scripts[-1]


def test_a_proxy_serving_a_layer_itself(site, with_layers, write_inventory):
    # One proxy that is also the only search node (all in one): reached directly, no frontend.
    text = """\
pattern: single
hosts:
  - {name: aio, address: 10.0.0.5, roles: [proxy, app, jobserver, monitoring, db, search]}
"""
    ctx = site(text=text, host="aio")
    assert [layer.name for layer in layers(ctx.inventory, ctx.host)] == []
    # A proxy among several nodes of a layer, without a floating address: refused at load.
    text = SITE.replace("  proxy:\n    vip: [10.0.0.100/24, 10.0.0.101/24]\n", "").replace(
        "private_address: 10.0.0.2, roles: [proxy]", "private_address: 10.0.0.2, roles: [proxy, search]"
    )
    path = write_inventory(text)
    assert load_problems(path) == [
        f"{path}:6: hosts[1].roles: lb2 is a proxy and serves search on port 9200 itself, where HAProxy balances "
        "search over lb2, s1, s2, s3: keep search off the proxy hosts, or set proxy.vip (HAProxy then listens on "
        "the floating address)"
    ]
    # With floating addresses HAProxy listens there, the node on its own address: no clash.
    ctx = site(
        text=SITE.replace(
            "private_address: 10.0.0.2, roles: [proxy]", "private_address: 10.0.0.2, roles: [proxy, search]"
        ),
        host="lb2",
    )
    (search,) = [layer for layer in layers(ctx.inventory, ctx.host) if layer.name == "search"]
    assert search.binds == ("10.0.0.100:9200", "10.0.0.101:9200") and "10.0.0.2:9200" in [
        s.address for s in search.servers
    ]


def test_the_storage_layer_goes_through_haproxy(site):
    """The real S3 storage component's Balanced declaration, without fakes."""
    conf = render_haproxy(site())
    frontend, backend = section(conf, "frontend storage"), section(conf, "backend storage")
    assert re.findall(r"bind (\S+)", frontend) == ["10.0.0.100:8333", "10.0.0.101:8333"]
    # Mattermost on the app servers and the job server: their private addresses only.
    assert "tcp-request connection reject unless { src 10.0.0.11 10.0.0.12 10.0.0.13 10.0.0.21 }" in frontend
    assert "option httpchk GET /healthz" in backend and "balance leastconn" in backend
    assert re.findall(r"server (\S+) (\S+) check", backend) == [
        ("s1", "10.0.0.41:8333"),
        ("s2", "10.0.0.42:8333"),
        ("s3", "10.0.0.43:8333"),
        ("s4", "10.0.0.44:8333"),
    ]
