"""etcd from Debian's package (3.4) on the DB hosts: the store Patroni keeps the leader lock
and the cluster's state in (database.ha: patroni). Three members (or five) on the DB
hosts' private addresses: one host may die and the others keep a quorum.

How it is set up, and why:
- The package would start a one-member cluster of its own with its defaults (and a later
  start with the real configuration would keep that cluster's data), so the unit is
  masked before the package is installed and first started with mmdeploy's
  configuration, in a data directory of mmdeploy's own.
- Peers and clients on the private addresses only (clients also on 127.0.0.1), plain
  HTTP: etcd holds no secret here (Patroni's passwords are in its own file); the private
  network must be trusted, as for HAProxy's and keepalived's traffic.
- The v3 API only (Patroni's `etcd3` client); the v2 API stays off.
- Heartbeat and election timeout as etcd's tuning guide advises for a LAN (100 ms and
  1 s by default): an etcd leader's death costs about a second of DCS unavailability.
- Members are started together by the runner (every DB host runs this component at the
  same time) and each waits until it is healthy within a quorum.

`verify` asks every member for its health and status through one DB host: a quorum,
exactly one leader, and which members are down.
"""

from __future__ import annotations

import json
import shlex

from pydantic import Field

from ..component import PEERS, Check, Component, Context, Metrics, Port, Warn, live
from ..errors import MMDeployError
from ..inventory import Host, Inventory
from ..ops import NOW, Command, Directory, File, OneAtATime, Packages, Service, started_since
from ..remote import Remote
from ..settings import Section

CONF = "/etc/default/etcd"
DATA_DIR = "/var/lib/etcd/mmdeploy"
# Every etcdctl call is bounded: a member that does not answer costs seconds.
ETCDCTL = "ETCDCTL_API=3 timeout 20 etcdctl --dial-timeout=2s --command-timeout=5s"
START_LIMIT = 300  # seconds a member waits for the others to form a quorum


class EtcdSettings(Section):
    """Patroni's store on the DB hosts (components/etcd.py)."""

    client_port: int = Field(default=2379, ge=1, le=65535)
    peer_port: int = Field(default=2380, ge=1, le=65535)
    # etcd's tuning guide: heartbeat about the round trip between members, election
    # timeout about ten heartbeats.
    heartbeat_ms: int = Field(default=100, ge=10, le=5000)
    election_timeout_ms: int = Field(default=1000, ge=50, le=50000)


def members(inventory: Inventory) -> list[Host]:
    return [h for h in inventory.with_role("db") if h.settings.database.ha == "patroni"]


def client_urls(inventory: Inventory) -> list[str]:
    return [f"http://{h.private_address}:{h.settings.etcd.client_port}" for h in members(inventory)]


def environment(inventory: Inventory, host: Host) -> str:
    """/etc/default/etcd: Debian's unit reads the ETCD_* variables from it."""
    e = host.settings.etcd
    peers = ",".join(f"{h.name}=http://{h.private_address}:{h.settings.etcd.peer_port}" for h in members(inventory))
    token = f"mmdeploy-{host.settings.patroni.scope}-{inventory.settings.domain}"
    values = {
        "ETCD_NAME": host.name,
        "ETCD_DATA_DIR": DATA_DIR,
        "ETCD_LISTEN_PEER_URLS": f"http://{host.private_address}:{e.peer_port}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://{host.private_address}:{e.peer_port}",
        "ETCD_LISTEN_CLIENT_URLS": f"http://{host.private_address}:{e.client_port},http://127.0.0.1:{e.client_port}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://{host.private_address}:{e.client_port}",
        "ETCD_INITIAL_CLUSTER": peers,
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_INITIAL_CLUSTER_TOKEN": token,
        "ETCD_HEARTBEAT_INTERVAL": str(e.heartbeat_ms),
        "ETCD_ELECTION_TIMEOUT": str(e.election_timeout_ms),
        "ETCD_ENABLE_V2": "false",
        # A member that comes back after an outage campaigns with a higher term and, without
        # pre-vote (3.4's default: off), makes the leader step down: for a few seconds no
        # request is served, and Patroni's leader, unable to renew its key, demotes itself.
        "ETCD_PRE_VOTE": "true",
        # Patroni's keys change every loop: keep an hour of history, not all of it.
        "ETCD_AUTO_COMPACTION_MODE": "periodic",
        "ETCD_AUTO_COMPACTION_RETENTION": "1h",
    }
    header = "# Managed by mmdeploy (components/etcd.py): Patroni's store on the DB hosts.\n"
    return header + "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


class Etcd(Component):
    name = "etcd"
    roles = ("db",)
    settings = {"etcd": EtcdSettings}
    metrics = (Metrics("etcd", lambda s: s.etcd.client_port),)
    ports = (
        Port("etcd clients", lambda h: h.settings.etcd.client_port, ("db",), why="Patroni on the DB hosts"),
        Port("etcd peers", lambda h: h.settings.etcd.peer_port, (PEERS,)),
    )
    after = ("base",)

    def enabled(self, host: Host) -> bool:
        return host.settings.database.ha == "patroni"

    def validate_layout(self, inventory: Inventory) -> list[tuple[str, str]]:
        count = len(members(inventory))
        if count and (count < 3 or count % 2 == 0):
            return [
                (
                    "hosts",
                    f"database.ha patroni keeps its state in etcd on the DB hosts, which needs an odd "
                    f"number of at least 3 of them (to keep a quorum when one dies); found {count}",
                )
            ]
        return []

    def steps(self, ctx: Context):
        installed = "dpkg-query -W -f '${Status}' etcd-server 2>/dev/null | grep 'install ok installed' >/dev/null"
        return [
            # Before the package starts a one-member cluster of its own with its defaults.
            Command("keep etcd from starting with the package's defaults", "systemctl mask etcd", unless=installed),
            Packages("etcd-server", "etcd-client"),
            Directory(DATA_DIR, owner="etcd", group="etcd", mode="0700"),
            File(CONF, environment(ctx.inventory, ctx.host), notify=("restart",)),
            # Started (unmasked) without waiting: the first member's start completes only
            # when a quorum has formed, which needs the other members started too.
            Command(
                "start etcd",
                "set -e\nsystemctl unmask etcd\nsystemctl enable etcd\n"
                "systemctl start --no-block etcd\n" + wait_healthy(ctx.host),
                unless="systemctl is-active etcd >/dev/null && systemctl is-enabled etcd >/dev/null",
                timeout=START_LIMIT + 30,
            ),
            Service("etcd"),
        ]

    def build_facts(self, host):
        return [NOW]

    def handlers(self, ctx: Context):
        now = int(ctx.facts.get([NOW])[NOW].out.strip() or 0)
        return {"restart": EtcdRestart(ctx.host, started_after=now, key=f"{ctx.inventory.path.resolve()}:etcd")}

    def checks(self, inventory: Inventory):
        hosts = members(inventory)
        if not hosts:
            return []
        return [Check(f"etcd: a quorum of {len(hosts)} members with one leader", lambda: cluster_problem(inventory))]


class EtcdRestart(OneAtATime):
    """The restart handler: one member at a time (a lock shared by the run's hosts), each
    healthy again before the next restarts, so the cluster never loses its quorum (and
    Patroni its leader lock). A member this run started runs the new configuration already
    and is left alone."""

    def __init__(self, host: Host, *, started_after: int, key: str):
        script = f"""set -e
if {started_since("etcd", started_after)}; then
  echo "etcd was started by this run: it runs the new configuration"
  exit 0
fi
systemctl restart --no-block etcd
{wait_healthy(host)}"""
        super().__init__("restart etcd (one member at a time)", script, key=key, timeout=START_LIMIT + 30)


def wait_healthy(host: Host) -> str:
    """Wait until this member answers as part of a cluster with a leader."""
    url = f"http://127.0.0.1:{host.settings.etcd.client_port}"
    return (
        f"for i in $(seq {START_LIMIT}); do\n"
        f"  {ETCDCTL} --endpoints={url} endpoint health >/dev/null 2>&1 && break\n"
        "  sleep 1\n"
        "done\n"
        f"{ETCDCTL} --endpoints={url} endpoint health >/dev/null 2>&1 || "
        f"{{ echo 'etcd on {host.name} did not join a quorum within {START_LIMIT} s' >&2; exit 1; }}\n"
    )


def status_script(inventory: Inventory) -> str:
    """Every member's status as etcdctl's JSON (members that do not answer are left out,
    and named on standard error)."""
    return f"{ETCDCTL} --endpoints={','.join(client_urls(inventory))} endpoint status -w json"


def parse_status(inventory: Inventory, output: str) -> tuple[dict[str, dict], str | None]:
    """(member name -> its status, leader name) from `etcdctl endpoint status -w json`."""
    by_url = {f"http://{h.private_address}:{h.settings.etcd.client_port}": h.name for h in members(inventory)}
    try:
        rows = json.loads(output or "[]")
    except ValueError:
        rows = []
    found: dict[str, dict] = {}
    ids: dict[object, str] = {}
    leader_id: object = None
    for row in rows:
        name = by_url.get(row.get("Endpoint", ""))
        status = row.get("Status") or {}
        if name is None:
            continue
        found[name] = status
        ids[(status.get("header") or {}).get("member_id")] = name
        leader_id = status.get("leader") or leader_id
    return found, ids.get(leader_id)


def cluster_problem(inventory: Inventory) -> str | None:
    """verify: a quorum answers and agrees on one leader. Members that are down are named
    (a degraded cluster that still has its quorum keeps Patroni working)."""
    from ..api import session

    hosts = members(inventory)
    redact = session(inventory)[0]
    last = "no DB host answers over SSH"
    for h in live(hosts):
        remote = Remote(h, redact)
        try:
            result = remote.run(status_script(inventory), timeout=30, what="etcd status", log_output=False)
        except MMDeployError as e:
            last = f"{h.name}: {e}"
            continue
        finally:
            remote.close()
        statuses, leader = parse_status(inventory, result.stdout)
        down = [m.name for m in hosts if m.name not in statuses]
        quorum = len(hosts) // 2 + 1
        if len(statuses) < quorum:
            return f"only {len(statuses)} of {len(hosts)} etcd members answer (down: {', '.join(down)}): no quorum"
        leaders = {s.get("leader") for s in statuses.values()}
        if leader is None or len(leaders) != 1:
            return f"etcd members disagree on their leader ({len(leaders)} views) or have none"
        # A member down with the quorum kept: the service works.
        return (
            Warn(f"{len(statuses)} of {len(hosts)} members answer (down: {', '.join(down)}): quorum kept")
            if down
            else None
        )
    return last


COMPONENTS = [Etcd()]
