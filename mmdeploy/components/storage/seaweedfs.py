"""SeaweedFS (Apache-2.0), the default S3 server: masters (Raft), volume servers holding
the files' copies, a filer on each storage host (its own store; filers replicate their
metadata to each other) and an S3 gateway on each storage host, behind the internal
balancer. Where each runs is decided once, in common.seaweed_layout.

One component per SeaweedFS server, so that the run's barrier between components starts
them in the order they need: the masters everywhere, then the volume servers, the filers,
the S3 gateways (which then create Mattermost's bucket and repair missing copies).

Installed from the official release archive (linux_amd64.tar.gz: one `weed` binary) under
/opt/seaweedfs-releases/<version>, run as the system user `seaweedfs` under systemd, its
logs in the journal. Security, per SeaweedFS's security.toml: volume servers accept writes
only with a JWT the masters sign, the filers only signed reads and writes over HTTP (the
keys are secrets, in an environment file only root reads); the masters' HTTP API answers
only the SeaweedFS hosts; S3 needs the generated access key (anonymous requests get 403).
The gRPC ports (HTTP port + 10000) must be reachable only between the SeaweedFS hosts:
SeaweedFS protects them with mutual TLS, which mmdeploy does not set up.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from ...artifacts import Artifact
from ...component import CONTROL, Balanced, Check, Component, Context, Metrics, Port, down_hosts, live, without_down
from ...inventory import Host, Inventory
from ...ops import Command, Directory, File, Group, Packages, Service, Unpacked, User, unit
from ...ops.secretfile import SecretFile
from ...remote import Remote
from ...secrets import Secret
from . import common
from .common import ACCESS_KEY, SECRET_KEY, STORAGE, StorageSettings

MASTER_PORT, VOLUME_PORT, FILER_PORT = 9333, 8080, 8888
# The metrics ports SeaweedFS's own examples use.
METRICS = {"master": 9324, "volume": 9325, "filer": 9326, "s3": 9327}
ETC = "/etc/seaweedfs"
ENV_FILE = f"{ETC}/seaweedfs.env"
S3_CONFIG = f"{ETC}/s3.json"
MASTER_TOML = f"{ETC}/master.toml"
RELEASES = "/opt/seaweedfs-releases"
WEED_LINK = "/usr/local/bin/weed"
# Every server in one data center and rack: replica placement 00N then means N more
# copies on other servers of the same rack, i.e. on other hosts.
DATA_CENTER, RACK = "dc1", "rack1"
SERVERS = ("master", "volume", "filer", "s3")
# A master or volume server does not stop on SIGTERM within seconds (the volume server
# waits -preStopSeconds, 10, after it stops sending heartbeats).
STOP_TIMEOUT = 20

JWT_VOLUME = Secret("seaweedfs_jwt_key", "SeaweedFS: signs writes to volume servers (security.toml jwt.signing.key)")
JWT_FILER = Secret("seaweedfs_filer_jwt_key", "SeaweedFS: signs writes to filers (jwt.filer_signing.key)")
JWT_FILER_READ = Secret(
    "seaweedfs_filer_read_jwt_key", "SeaweedFS: signs reads from filers (jwt.filer_signing.read.key)"
)


GRPC = 10000  # a server's gRPC port is its HTTP port + 10000


def seaweed_hosts(inventory: Inventory) -> list[Host]:
    return list(layout(inventory).hosts)


def internal(name: str, port: int, *more: str) -> tuple[Port, Port]:
    """A server's HTTP and gRPC ports, for the SeaweedFS hosts only (masters, volume
    servers, filers and gateways talk to each other on both)."""
    return (
        Port(name, port, more, reach_hosts=seaweed_hosts, why="the SeaweedFS hosts"),
        Port(f"{name} gRPC", port + GRPC, reach_hosts=seaweed_hosts, why="the SeaweedFS hosts"),
    )


def enabled(inventory: Inventory) -> bool:
    return common.server(inventory) == "seaweedfs"


def layout(inventory: Inventory) -> common.SeaweedLayout:
    return common.seaweed_layout(inventory)


def version(settings: Any) -> str:
    return settings.storage.version or common.SEAWEEDFS_VERSION


def data_dir(settings: Any) -> str:
    return settings.storage.data_dir or "/var/lib/seaweedfs"


def weed(settings: Any) -> str:
    return f"{RELEASES}/{version(settings)}/weed"


def artifact(settings: Any) -> Artifact:
    return common.release(settings, "seaweedfs", common.SEAWEEDFS_VERSION)


def addresses(hosts, port: int) -> str:
    return ",".join(f"{h.private_address}:{port}" for h in hosts)


# The most open files this host's service manager may grant.
NOFILE_PROBE = "awk '/^Max open files/ {print $5}' /proc/1/limits"


def nofile(ctx: Context) -> int:
    """LimitNOFILE: 65536 (each volume keeps its files open), or the most this host's
    service manager may grant (a container's hard limit can be lower, and systemd fails a
    unit asking for more)."""
    value = ctx.facts.get([NOFILE_PROBE])[NOFILE_PROBE].out.strip()
    return 65536 if not value.isdigit() else min(65536, int(value))


def command_args(server: str, host: Host, inventory: Inventory) -> list[str]:
    """The arguments of `weed <server>` on `host` (weed's global flags first)."""
    s = inventory.settings
    plan = layout(inventory)
    ip = host.private_address
    data = data_dir(s)
    masters = addresses(plan.masters, MASTER_PORT)
    if server == "master":
        peers = masters if len(plan.masters) > 1 else "none"
        # The HTTP API (assign, grow, delete a collection) answers only SeaweedFS's hosts.
        allowed = ",".join(["127.0.0.1", *(h.private_address for h in plan.hosts)])
        args = [
            f"-ip={ip}",
            f"-ip.bind={ip}",
            f"-port={MASTER_PORT}",
            f"-mdir={data}/master",
            f"-peers={peers}",
            f"-defaultReplication={plan.replication}",
            f"-volumeSizeLimitMB={s.storage.volume_size_limit_mb}",
            f"-whiteList={allowed}",
            "-telemetry=false",
        ]
    elif server == "volume":
        args = [
            f"-ip={ip}",
            f"-ip.bind={ip}",
            f"-port={VOLUME_PORT}",
            f"-dir={data}/volume",
            f"-max={s.storage.max_volumes}",
            f"-master={masters}",
            f"-dataCenter={DATA_CENTER}",
            f"-rack={RACK}",
        ]
    elif server == "filer":
        args = [
            f"-ip={ip}",
            f"-ip.bind={ip}",
            f"-port={FILER_PORT}",
            f"-master={masters}",
            f"-defaultStoreDir={data}/filer",
            f"-defaultReplicaPlacement={plan.replication}",
            f"-dataCenter={DATA_CENTER}",
        ]
    else:
        # Its own host's filer first, the others as fallbacks.
        filers = [host, *(h for h in plan.storage if h != host)]
        args = [
            f"-ip.bind={ip}",
            f"-port={common.s3_port(s)}",
            f"-filer={addresses(filers, FILER_PORT)}",
            f"-config={S3_CONFIG}",
            "-port.iceberg=0",
            "-port.lance=0",
            "-iam=false",
        ]
    return ["-logtostderr=true", server, *args, f"-metricsPort={METRICS[server]}"]


def unit_name(server: str) -> str:
    return f"seaweedfs-{server}"


def render_unit(ctx: Context, server: str) -> str:
    return ctx.render(
        "seaweedfs/seaweedfs.service.j2",
        server=server,
        weed=weed(ctx.settings),
        args=command_args(server, ctx.host, ctx.inventory),
        env_file=ENV_FILE,
        workdir=data_dir(ctx.settings),
        nofile=nofile(ctx),
        stop_timeout=STOP_TIMEOUT,
    )


def s3_config(ctx: Context) -> str:
    """The S3 gateway's identities: Mattermost's key pair, allowed everything on its
    bucket (creating it needs Admin) and nothing on any other; with the backup repository
    on this storage, the backup keys, likewise on the backup bucket only. SeaweedFS
    scopes an action to a bucket as "Action:bucket" (Identity.CanDo). Nobody else, so
    anonymous requests get 403."""

    def identity(name: str, key: str, secret: str, bucket: str) -> dict:
        actions = ["Admin", "Read", "Write", "List", "Tagging"]
        return {
            "name": name,
            "credentials": [{"accessKey": key, "secretKey": secret}],
            "actions": [f"{a}:{bucket}" for a in actions],
        }

    identities = [
        identity("mattermost", ctx.secrets.get(ACCESS_KEY), ctx.secrets.get(SECRET_KEY), ctx.settings.storage.bucket)
    ]
    backup = common.backup_bucket(ctx.inventory)
    if backup:
        key, secret = ctx.secrets.get(common.BACKUP_ACCESS_KEY), ctx.secrets.get(common.BACKUP_SECRET_KEY)
        identities.append(identity(common.BACKUP_IDENTITY, key, secret, backup))
    return json.dumps({"identities": identities}, indent=2) + "\n"


def env_file(ctx: Context) -> str:
    """The JWT keys of security.toml, as the environment variables SeaweedFS reads them from."""
    values = {
        "WEED_JWT_SIGNING_KEY": JWT_VOLUME,
        "WEED_JWT_FILER_SIGNING_KEY": JWT_FILER,
        "WEED_JWT_FILER_SIGNING_READ_KEY": JWT_FILER_READ,
    }
    # A systemd EnvironmentFile: double-quoted, backslash and quote escaped (any key reads back).
    lines = ["# Managed by mmdeploy (components/storage/seaweedfs.py): SeaweedFS's JWT signing keys."]
    for name, secret in values.items():
        value = ctx.secrets.get(secret).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{name}="{value}"')
    return "\n".join(lines) + "\n"


READY_LIMIT = 120  # seconds a server may take to answer after a start


def ready_probe(server: str, host: Host, settings: Any) -> str:
    """Answers once the server can serve: a master knows the Raft leader, a volume server
    sends the masters its heartbeats, a filer reads its store, a gateway listens."""
    ip = host.private_address
    if server == "master":
        return f'curl -fsS --max-time 5 http://{ip}:{MASTER_PORT}/cluster/status | grep \'"Leader":"[^"]\' >/dev/null'
    port = {"volume": VOLUME_PORT, "filer": FILER_PORT, "s3": common.s3_port(settings)}[server]
    return f"curl -fsS --max-time 5 -o /dev/null http://{ip}:{port}/healthz"


def wait_ready(server: str, host: Host, settings: Any) -> str:
    return (
        f"for i in $(seq {READY_LIMIT}); do {ready_probe(server, host, settings)} && exit 0; sleep 1; done\n"
        f"echo '{unit_name(server)} did not answer within {READY_LIMIT} s' >&2\nexit 1\n"
    )


def _started(name: str) -> str:
    return (
        f'started=$(date -d "$(systemctl show -P ActiveEnterTimestamp --timestamp=us+utc {name})" +%s%N '
        f"2>/dev/null || echo 0)\n"
    )


def restart(server: str, host: Host, settings: Any, files: list[str], unless: str | None = None) -> Command:
    """Restart the server unless it started after its files last changed (a first deploy
    has just started it with them: a second start would only cost a Raft election), then
    wait until it answers."""
    name = unit_name(server)
    script = (
        f"set -e\n{_started(name)}"
        f"for f in {' '.join(files)}; do\n"
        f'  if [ "$(date -r "$f" +%s%N)" -gt "$started" ]; then systemctl restart {name}; break; fi\n'
        f"done\n" + wait_ready(server, host, settings)
    )
    return Command(f"restart {name}", script, unless=unless, timeout=STOP_TIMEOUT + READY_LIMIT + 30)


def identities_loaded(host: Host, settings: Any) -> Command:
    """The gateway reads s3.json only when it starts: when the file changed (a new
    identity) it is restarted before the buckets are created with it, not after them in
    the handler (which then finds it started after the change)."""
    name = unit_name("s3")
    loaded = f'{_started(name)}test "$(date -r {S3_CONFIG} +%s%N)" -le "$started"'
    return restart("s3", host, settings, [S3_CONFIG], unless=loaded)


class SeaweedFS(Component):
    """The release, user, directories and shared configuration on every SeaweedFS host
    (the storage hosts, and the job/monitoring host completing two of them)."""

    name = "seaweedfs"
    roles = ("storage", "jobserver", "monitoring")
    owns_roles = (STORAGE,)
    settings = {"storage": StorageSettings}
    secrets = (
        ACCESS_KEY,
        SECRET_KEY,
        common.BACKUP_ACCESS_KEY,
        common.BACKUP_SECRET_KEY,
        JWT_VOLUME,
        JWT_FILER,
        JWT_FILER_READ,
    )
    after = ("base",)

    def hosts(self, inventory):
        return list(layout(inventory).hosts) if enabled(inventory) else []

    def validate_layout(self, inventory):
        return common.layout_problems(inventory)

    def steps(self, ctx: Context):
        s = ctx.settings
        release = f"{RELEASES}/{version(s)}"
        data = data_dir(s)
        return [
            Packages("curl"),  # the readiness probes, and operators' requests to the servers
            Group("seaweedfs"),
            User("seaweedfs", home=data),
            Directory(RELEASES),
            # The archive holds the one binary at its top level.
            Unpacked(artifact(s), release, strip=0, fetch_on_host=s.storage.fetch_on_host),
            Command(
                f"{WEED_LINK} -> {release}/weed",
                f"ln -sfn {release}/weed {WEED_LINK}",
                unless=f'test "$(readlink {WEED_LINK})" = {release}/weed',
            ),
            Directory(ETC, group="seaweedfs", mode="0750"),
            # Read by systemd (root) only: the servers get the keys in their environment.
            SecretFile(ENV_FILE, env_file(ctx), mode="0600", notify=("restart",)),
            Directory(data, owner="seaweedfs", group="seaweedfs", mode="0750"),
        ]

    def handlers(self, ctx: Context):
        # New keys: every SeaweedFS server running on the host (a pattern matches only
        # the units there, none on a first deploy).
        return {
            "restart": Command(
                "restart SeaweedFS",
                "systemctl try-restart 'seaweedfs-*.service'",
                timeout=STOP_TIMEOUT * len(SERVERS) + 60,
            )
        }


class _Server(Component):
    """One SeaweedFS server (`weed <server>`) on the hosts the layout gives it."""

    server = ""
    roles = ("storage",)

    def on(self, plan: common.SeaweedLayout) -> tuple[Host, ...]:
        raise NotImplementedError

    def hosts(self, inventory):
        return list(self.on(layout(inventory))) if enabled(inventory) else []

    def server_steps(self, ctx: Context) -> list:
        return []

    def build_facts(self, host):
        return [NOFILE_PROBE]

    def config_files(self) -> list[str]:
        """The files whose change restarts the server (besides its unit and ENV_FILE)."""
        return []

    def steps(self, ctx: Context):
        restart_ = (f"restart {self.server}",)
        name = unit_name(self.server)
        return [
            Directory(f"{data_dir(ctx.settings)}/{self.server}", owner="seaweedfs", group="seaweedfs", mode="0750"),
            *self.server_steps(ctx),
            unit(f"{name}.service", render_unit(ctx, self.server), notify=restart_),
            Service(name),
            Command(
                f"{name} answers",
                wait_ready(self.server, ctx.host, ctx.settings),
                unless=ready_probe(self.server, ctx.host, ctx.settings),
                timeout=READY_LIMIT + 30,
            ),
        ]

    def retire(self, ctx: Context):
        # A server the layout moved elsewhere (growing two storage hosts into four moves the
        # third master and volume server off the job server): stopped, its data kept; the
        # copies it held are made again on the others by the gateway's repair step.
        return [Service(unit_name(self.server), enabled=False, running=False)]

    def handlers(self, ctx: Context):
        files = [f"/etc/systemd/system/{unit_name(self.server)}.service", ENV_FILE, *self.config_files()]
        return {f"restart {self.server}": restart(self.server, ctx.host, ctx.settings, files)}


class Master(_Server):
    name = "seaweedfs-master"
    server = "master"
    metrics = (Metrics("seaweedfs-master", METRICS["master"]),)
    # verify asks each master for the leader and the leader's gauges.
    ports = (
        *internal("seaweedfs master", MASTER_PORT, CONTROL),
        Port("seaweedfs master metrics", METRICS["master"], (CONTROL,), why="verify from the control machine"),
    )
    after = ("seaweedfs",)

    def on(self, plan):
        return plan.masters

    def server_steps(self, ctx: Context):
        config = ctx.render("seaweedfs/master.toml.j2", minutes=ctx.settings.storage.maintenance_minutes)
        return [File(MASTER_TOML, config, group="seaweedfs", mode="0640", notify=("restart master",))]

    def config_files(self):
        return [MASTER_TOML]

    def checks(self, inventory):
        masters = self.hosts(inventory)
        # The masters verify found down are not asked (with a quorum left, the others lead).
        check = Check(f"SeaweedFS masters agree on a leader ({len(masters)})", _one_leader(live(masters)))
        return [check] if masters else []


class Volume(_Server):
    name = "seaweedfs-volume"
    server = "volume"
    metrics = (Metrics("seaweedfs-volume", METRICS["volume"]),)
    ports = internal("seaweedfs volume", VOLUME_PORT)
    after = ("seaweedfs-master",)

    def on(self, plan):
        return plan.volumes


class Filer(_Server):
    name = "seaweedfs-filer"
    server = "filer"
    metrics = (Metrics("seaweedfs-filer", METRICS["filer"]),)
    ports = internal("seaweedfs filer", FILER_PORT)
    after = ("seaweedfs-volume",)

    def on(self, plan):
        return plan.storage

    def server_steps(self, ctx: Context):
        first = layout(ctx.inventory).storage[0]
        if ctx.host == first:
            return []
        # Fresh filers started together each wait for the other to catch up, up to a
        # minute (SeaweedFS's announce cap): the others start once the first answers.
        # Never fatal: with the first host down, a filer starts on its own after the wait.
        probe = ready_probe("filer", first, ctx.settings)
        return [
            Command(
                f"first start after the filer on {first.name}",
                f"for i in $(seq {READY_LIMIT}); do {probe} && break; sleep 1; done\n",
                unless=f"systemctl is-enabled seaweedfs-filer >/dev/null 2>&1 || {probe}",
                timeout=READY_LIMIT + 30,
            )
        ]


class Gateway(_Server):
    """The S3 gateways, behind the internal balancer; the first storage host also creates
    Mattermost's bucket and repairs files that lack a copy (after a host came back with
    an empty disk, or was replaced)."""

    name = "seaweedfs-s3"
    server = "s3"
    metrics = (Metrics("seaweedfs-s3", METRICS["s3"]),)
    balanced = (Balanced("storage", port=common.s3_port, health="/healthz"),)
    # Mattermost reaches it through the balancer (derived); verify's S3 round trip asks each.
    ports = (Port("s3", lambda h: common.s3_port(h.settings), (CONTROL,), why="verify from the control machine"),)
    after = ("seaweedfs-filer",)

    def on(self, plan):
        return plan.storage

    def server_steps(self, ctx: Context):
        return [SecretFile(S3_CONFIG, s3_config(ctx), group="seaweedfs", mode="0640", notify=("restart s3",))]

    def config_files(self):
        return [S3_CONFIG]

    def steps(self, ctx: Context):
        steps = super().steps(ctx)
        plan = layout(ctx.inventory)
        if ctx.host == plan.storage[0]:
            backup = common.backup_bucket(ctx.inventory)
            # The backup bucket is created with the backup keys: its owner, the only one allowed.
            if backup:
                steps.append(identities_loaded(ctx.host, ctx.settings))
            also = (backup, common.BACKUP_IDENTITY) if backup else None
            steps += common.bucket_steps(ctx.settings, ctx.host, S3_CONFIG, also)
            if len(plan.volumes) > 1:
                steps += [repair(plan, ctx.host), balance(plan, ctx.host)]
        return steps

    def checks(self, inventory):
        gateways = self.hosts(inventory)
        if not gateways:
            return []
        return [
            *common.s3_checks(inventory, gateways),
            Check("SeaweedFS: every file has its copies", _replicated(inventory)),
        ]


# --- repair ----------------------------------------------------------------------------

# A python3 probe on a SeaweedFS host: reads the leading master's view of every volume
# server (/vol/status), waiting up to 15 s until the layout's servers have all reported (a
# host that is down then counts as holding nothing), and prints what `tail` computes from
# `nodes` (server -> its volumes).
_VOLUME_PROBE = """\
python3 - {{url}} {{servers}} <<'MMDEPLOY_PY'
import json, sys, time, urllib.request
url, wanted = sys.argv[1], int(sys.argv[2])
for attempt in range(15):
    with urllib.request.urlopen(url, timeout=10) as r:
        topology = json.load(r)["Volumes"]["DataCenters"]
    nodes = {{{{n: vols for dc in topology.values() for rack in dc.values() for n, vols in rack.items()}}}}
    if len(nodes) >= wanted:
        break
    time.sleep(1)
{tail}
MMDEPLOY_PY
"""  # the delimiter alone on its line, also inside $(...)

# The count of volumes with fewer copies than their replica placement asks.
_UNDER_REPLICATED = _VOLUME_PROBE.format(
    tail="""\
found, expected = {{}}, {{}}
for vols in nodes.values():
    for v in vols or []:
        found[v["Id"]] = found.get(v["Id"], 0) + 1
        rp = v.get("ReplicaPlacement") or {{}}
        expected[v["Id"]] = 1 + rp.get("node", 0) + rp.get("rack", 0) + rp.get("dc", 0)
print(sum(1 for i in found if found[i] < expected[i]))"""
)

# How many volume servers hold no volume while there are at least as many volume copies as
# servers (a server that joined a running store: growing two storage hosts into four); else 0.
_EMPTY_SERVERS = _VOLUME_PROBE.format(
    tail="""\
copies = sum(len(vols or []) for vols in nodes.values())
print(sum(1 for vols in nodes.values() if not vols) if copies >= len(nodes) else 0)"""
)


def under_replicated_probe(plan: common.SeaweedLayout, host: Host, servers: int | None = None) -> str:
    """The count, once `servers` volume servers (default: all of the layout) reported."""
    return _UNDER_REPLICATED.format(
        url=f"http://{host.private_address}:{MASTER_PORT}/vol/status",
        servers=len(plan.volumes) if servers is None else servers,
    )


def balance(plan: common.SeaweedLayout, host: Host) -> Command:
    """Volumes moved onto volume servers that joined a running store, with SeaweedFS's own
    balancer (`volume.balance`, all collections together): new servers otherwise only get
    the volumes created after they joined."""
    probe = _EMPTY_SERVERS.format(
        url=f"http://{host.private_address}:{MASTER_PORT}/vol/status", servers=len(plan.volumes)
    )
    masters = addresses(plan.masters, MASTER_PORT)
    script = (
        f"set -e\nprintf 'lock\\nvolume.balance -collection ALL_COLLECTIONS -apply\\nunlock\\n' | "
        f"timeout 1800 {WEED_LINK} shell -master={masters}\n"
    )
    return Command(
        "balance volumes onto new volume servers (volume.balance)",
        script,
        unless=f'test "$({probe})" = 0',
        timeout=1860,
    )


def repair(plan: common.SeaweedLayout, host: Host) -> Command:
    """SeaweedFS's own repair (`volume.fix.replication`, which the leading master also runs
    every storage.maintenance_minutes), right away when a file lacks a copy."""
    probe = under_replicated_probe(plan, host)
    masters = addresses(plan.masters, MASTER_PORT)
    script = (
        f"set -e\nprintf 'lock\\nvolume.fix.replication -apply\\nunlock\\n' | "
        f"timeout 900 {WEED_LINK} shell -master={masters}\n"
        f"left=$({probe})\n"
        f'if [ "$left" != 0 ]; then echo "$left volumes still lack a copy (is a volume server down or full?)" >&2; exit 1; fi\n'
    )
    return Command(
        "repair files lacking a copy (volume.fix.replication)", script, unless=f'test "$({probe})" = 0', timeout=960
    )


# --- verify ----------------------------------------------------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def _http_address(leader: str) -> str:
    """host:port of a Raft leader SeaweedFS names host:port.grpcport."""
    host, _, ports = leader.rpartition(":")
    return f"{host}:{ports.split('.')[0]}" if host else leader


def _one_leader(masters: list[Host]):
    def check() -> str | None:
        leaders = {}
        for h in masters:
            try:
                leaders[h.name] = _get_json(f"http://{h.address}:{MASTER_PORT}/cluster/status").get("Leader", "")
            except OSError as e:
                leaders[h.name] = f"unreachable ({e})"
        # A leader is named host:port.grpcport.
        distinct = {_http_address(v) for v in leaders.values()}
        valid = {f"{h.private_address}:{MASTER_PORT}" for h in masters}
        if len(distinct) != 1 or not distinct <= valid:
            return "masters disagree or have no leader: " + ", ".join(f"{n}: {v or 'none'}" for n, v in leaders.items())
        return None

    return check


def _replicated(inventory: Inventory):
    """Every volume has the copies its placement asks, counted from the leading master's
    /vol/status (its under-replicated gauge is only refreshed by the periodic maintenance):
    a warning while a volume server is down (its copies are missing until it is back or
    the masters' repair copies them elsewhere)."""
    from ...api import session

    plan = layout(inventory)
    gone = [h for h in plan.volumes if h.name in down_hosts()]
    masters = live(plan.masters)

    def check() -> str | None:
        for h in masters:
            try:
                if not _get_json(f"http://{h.address}:{MASTER_PORT}/cluster/status").get("IsLeader"):
                    continue
            except OSError:
                continue
            remote = Remote(h, session(inventory)[0])
            try:
                probe = under_replicated_probe(plan, h, servers=len(plan.volumes) - len(gone))
                result = remote.run(probe, timeout=60, what="counting the copies of each volume")
            finally:
                remote.close()
            if not result.ok or not result.stdout.strip().isdigit():
                return f"cannot count the copies on {h.name}: {result.stderr.strip()[-200:] or result.rc}"
            under = int(result.stdout.strip())
            return without_down(
                None
                if under == 0
                else f"{under} volumes lack a copy (the masters repair them every "
                f"{inventory.settings.storage.maintenance_minutes} min; `inv deploy` at once)",
                gone,
            )
        return "no master answers as the leader"

    return check


COMPONENTS = [SeaweedFS(), Master(), Volume(), Filer(), Gateway()]
