"""Drift: where nodes that must be identical disagree with each other, and where a node
disagrees with the inventory. Reads only.

`plan` says what a deploy would change on each host; drift says where the nodes of one
tier differ among themselves (a known pain of a Mattermost HA cluster: a config edited on
one node through the System Console, a plugin installed on one, a node left on the old
release or left drained after an interrupted upgrade). Compared:
- app servers with each other: the live release, the config (config.json without the
  keys that are per node by design; or the database-config environment), the plugins
  and their versions, the systemd unit;
- job servers with each other: release, unit;
- proxies with each other: the TLS certificate, the app servers in their upstream and
  which of them are marked down;
- every node with the inventory: the release it names (mattermost.version), the database
  driver, the app servers the proxies should send to.
Within a group the value most nodes have is the reference; each node that differs is
named with its value. One node alone is only compared with the inventory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from .components.mattermost import CONFIG, ENV_FILE, HOME, unit_name
from .components.nginx import CERT, CONF as NGINX_CONF
from .fleet import Fleet
from .inventory import Host, Inventory

# config.json keys that differ per node by design (Mattermost leaves them out of its own
# config hash for the same reason), and the job settings mmdeploy sets per role.
PER_NODE = (
    "ClusterSettings.AdvertiseAddress",
    "ClusterSettings.OverrideHostname",
    "ClusterSettings.BindAddress",
    "ClusterSettings.NetworkInterface",
    "ServiceSettings.ListenAddress",  # each node's private address
    "MetricsSettings.ListenAddress",
)
# The same keys as the units' environment gives them with the config in the database.
PER_NODE_ENV = ("MM_JOBSETTINGS_", *(f"MM_{k.replace('.', '_').upper()}=" for k in PER_NODE))


@dataclass
class Difference:
    what: str  # release | config | plugins | unit | certificate | upstream | drained | inventory
    host: str
    value: str
    expected: str
    group: str  # app | jobserver | proxy

    def __str__(self) -> str:
        return f"{self.host}: {self.what} is {self.value}, expected {self.expected}"


@dataclass
class DriftReport:
    differences: list[Difference] = field(default_factory=list)
    facts: dict[str, dict] = field(default_factory=dict)  # host -> what was read

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}


def _jq_del() -> str:
    return "del(" + ", ".join("." + k for k in PER_NODE) + ")"


def _mattermost_script(host: Host) -> str:
    u = unit_name(host)
    return f"""\
echo "version=$(cat {HOME}/.mmdeploy-version 2>/dev/null)"
echo "release=$(cat {HOME}/.mmdeploy-release 2>/dev/null | cut -c1-12)"
if [ -f {CONFIG} ]; then
  echo "config=$(jq -S '{_jq_del()}' {CONFIG} | sha256sum | cut -c1-12)"
  echo "driver=$(jq -r '.SqlSettings.DriverName // ""' {CONFIG})"
  echo "jobs=$(jq -c '[.JobSettings.RunJobs, .JobSettings.RunScheduler]' {CONFIG})"
fi
if [ -f {ENV_FILE} ]; then echo "dbconfig=$(grep -v -e {" -e ".join("'^" + k + "'" for k in PER_NODE_ENV)} {ENV_FILE} | sha256sum | cut -c1-12)"; fi
for d in {HOME}/plugins/*/; do
  [ -f "$d/plugin.json" ] && echo "plugin=$(jq -r '.id + "@" + (.version // "?")' "$d/plugin.json")"
done
echo "unit=$(cat /etc/systemd/system/{u}.service /etc/systemd/system/{u}.service.d/*.conf 2>/dev/null | sha256sum | cut -c1-12)"
echo "active=$(systemctl is-active {u})"
"""


def _proxy_script() -> str:
    return f"""\
echo "certificate=$(openssl x509 -in {CERT} -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2 | tr -d : | cut -c1-16)"
sed -nE '/^[[:space:]]*upstream backend/,/^[[:space:]]*\\}}/ s/^[[:space:]]*server ([^ ;]+)([^;]*);.*/server=\\1\\2/p' {NGINX_CONF}
"""


def _parse(out: str) -> dict:
    facts: dict = {"plugin": [], "server": []}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in facts and isinstance(facts[key], list):
            facts[key].append(value.strip())
        else:
            facts[key] = value.strip()
    return facts


def compare(group: str, what: str, values: dict[str, str], out: list[Difference]) -> None:
    """Name each host whose value is not the one most hosts of the group have."""
    if len(values) < 2:
        return
    counts = Counter(values.values())
    top = counts.most_common()
    if len(top) > 1 and top[0][1] == top[1][1]:  # no majority: every node is named
        expected = " or ".join(sorted(v for v, n in top if n == top[0][1]))
        for host, value in values.items():
            out.append(Difference(what, host, value, f"the same on every {group} node (seen: {expected})", group))
        return
    reference = top[0][0]
    for host, value in values.items():
        if value != reference:
            out.append(Difference(what, host, value, reference, group))


def drift(inventory: Inventory, out=None) -> DriftReport:
    report = DriftReport()
    apps = inventory.with_role("app")
    jobs = [h for h in inventory.hosts if h.has("jobserver") and not h.has("app")]
    proxies = inventory.with_role("proxy")
    mm = inventory.settings.mattermost
    mm_names = {h.name for h in apps + jobs}
    proxy_names = {h.name for h in proxies}
    with Fleet(inventory, "drift", out) as fleet:

        def read(h: Host) -> tuple[str, dict]:
            script = _mattermost_script(h) if h.name in mm_names else _proxy_script()
            facts = _parse(fleet.remote(h).run(script, timeout=60, what=f"read {h.name}").stdout)
            if h.name in proxy_names and h.name in mm_names:  # an all-in-one host is both
                more = _parse(fleet.remote(h).run(_proxy_script(), timeout=60, what=f"read {h.name}").stdout)
                facts.update(certificate=more.get("certificate"), server=more["server"])
            return h.name, facts

        hosts = [h for h in inventory.hosts if h.name in mm_names | proxy_names]
        report.facts = dict(fleet.parallel(read, hosts))
    f, d = report.facts, report.differences
    for group, hosts in (("app", apps), ("jobserver", jobs)):
        compare(group, "release", {h.name: f[h.name].get("version") or "unknown" for h in hosts}, d)
        compare(group, "unit", {h.name: f[h.name].get("unit", "") for h in hosts}, d)
    compare("app", "config", {h.name: f[h.name].get("config") or f[h.name].get("dbconfig") or "none" for h in apps}, d)
    compare("app", "plugins", {h.name: ", ".join(sorted(f[h.name]["plugin"])) or "none" for h in apps}, d)
    # A self-signed certificate is made on each proxy and its key never leaves it (nginx.py):
    # different on every proxy by design. A provided or ACME one must be the same everywhere.
    signed = [h for h in proxies if h.settings.tls.mode != "self-signed"]
    compare("proxy", "certificate", {h.name: f[h.name].get("certificate") or "none" for h in signed}, d)
    # Against the inventory.
    driver = "postgres" if inventory.settings.database.engine == "postgresql" else "mysql"
    for h in apps + jobs:
        version = f[h.name].get("version") or "unknown"
        if version != mm.version:
            d.append(
                Difference(
                    "inventory",
                    h.name,
                    f"release {version}",
                    f"mattermost.version {mm.version}",
                    "app" if h.has("app") else "jobserver",
                )
            )
        if f[h.name].get("driver") and f[h.name]["driver"] != driver:
            d.append(
                Difference(
                    "inventory",
                    h.name,
                    f"database driver {f[h.name]['driver']}",
                    f"{driver} (database.engine {inventory.settings.database.engine})",
                    "app" if h.has("app") else "jobserver",
                )
            )
        if f[h.name].get("active") != "active":
            d.append(
                Difference(
                    "inventory",
                    h.name,
                    f"{unit_name(h)} {f[h.name].get('active') or 'unknown'}",
                    "active",
                    "app" if h.has("app") else "jobserver",
                )
            )
    wanted = sorted(f"{h.private_address}:{h.settings.mattermost.port}" for h in apps)
    for p in proxies:
        servers = [s.split()[0] for s in f[p.name]["server"]]
        if sorted(servers) != wanted:
            d.append(Difference("upstream", p.name, ", ".join(sorted(servers)) or "none", ", ".join(wanted), "proxy"))
        down = [s.split()[0] for s in f[p.name]["server"] if s.split()[-1] == "down"]
        if down:
            d.append(
                Difference(
                    "drained",
                    p.name,
                    f"{', '.join(down)} marked down",
                    "every app server in service (an interrupted upgrade? `inv deploy` restores)",
                    "proxy",
                )
            )
    return report


def format_report(report: DriftReport) -> str:
    if report.ok:
        return "no drift: the nodes agree with each other and with the inventory"
    rows = [("host", "group", "what", "value", "expected")]
    rows += [(x.host, x.group, x.what, x.value, x.expected) for x in report.differences]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows)


__all__ = ["Difference", "DriftReport", "compare", "drift", "format_report"]
