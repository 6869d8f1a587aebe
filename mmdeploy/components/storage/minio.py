"""MinIO (storage.server: minio), for sites that already run it.

MinIO's community edition has shipped source only since late 2025 and has been
unmaintained since early 2026, and its server is AGPL: mmdeploy installs its last official
binaries by URL + sha256 (storage.version is the RELEASE tag, storage.sha256 required;
storage.url for a mirror), never a build. Not exercised on the test bed (the binary cannot
be downloaded there); its unit, environment and host names are unit-tested.

Laid out as MinIO's multi-node multi-drive documentation describes: one `minio server` per
storage host, run by the system user `minio-user` from /etc/default/minio, the hosts named
in sequence (mmdeploy-minio1..N in /etc/hosts, for MinIO's {1...N} expansion) and
storage.minio_drives data directories each. Erasure coding survives losing a server for
writes only from 4 servers (MinIO's sizing guide): validation refuses 2 or 3. One storage
host is a single-node deployment (the single pattern, no redundancy).
"""

from __future__ import annotations

import shlex
import urllib.request
from typing import Any

from ...artifacts import Artifact
from ...component import CONTROL, PEERS, Balanced, Check, Component, Context, Metrics, Port, live
from ...inventory import Inventory
from ...ops import Binary, Command, Directory, Group, Service, User, unit
from ...ops.exporter import env_file as render_env
from ...ops.secretfile import SecretFile
from . import common
from .common import ACCESS_KEY, SECRET_KEY

ENV_FILE = "/etc/default/minio"
RELEASES = "/opt/minio-releases"
USER = "minio-user"
CONSOLE = "127.0.0.1:9001"  # the web console, on the host only
HOSTS_MARK = "# mmdeploy minio"


def enabled(inventory: Inventory) -> bool:
    return common.server(inventory) == "minio"


def binary(settings: Any) -> str:
    return f"{RELEASES}/{settings.storage.version}/minio"


def data_dir(settings: Any) -> str:
    return settings.storage.data_dir or "/var/lib/minio"


def artifact(settings: Any) -> Artifact:
    return common.release(settings, "minio", None)


def host_names(inventory: Inventory) -> list[tuple[str, str]]:
    """(private address, name) of every storage host, named in sequence for MinIO's
    {1...N} expansion notation."""
    return [(h.private_address, f"mmdeploy-minio{i}") for i, h in enumerate(inventory.with_role("storage"), 1)]


def volumes(inventory: Inventory) -> str:
    """MINIO_VOLUMES: every drive of every server, in MinIO's expansion notation."""
    s = inventory.settings
    drives = s.storage.minio_drives
    paths = f"{data_dir(s)}/data{{1...{drives}}}" if drives > 1 else f"{data_dir(s)}/data1"
    count = len(inventory.with_role("storage"))
    if count == 1:
        return paths
    return f"http://mmdeploy-minio{{1...{count}}}:{common.s3_port(s)}{paths}"


def environment(ctx: Context) -> str:
    s = ctx.settings
    return render_env(
        "components/storage/minio.py",
        MINIO_VOLUMES=volumes(ctx.inventory),
        MINIO_OPTS=f"--address {ctx.host.private_address}:{common.s3_port(s)} --console-address {CONSOLE}",
        MINIO_ROOT_USER=ctx.secrets.get(ACCESS_KEY),
        MINIO_ROOT_PASSWORD=ctx.secrets.get(SECRET_KEY),
        MINIO_SITE_REGION=s.storage.region,
        # Prometheus scrapes /minio/v2/metrics/node on the private network without a token.
        MINIO_PROMETHEUS_AUTH_TYPE="public",
    )


def hosts_block(inventory: Inventory) -> str:
    return "".join(f"{address} {name} {HOSTS_MARK}\n" for address, name in host_names(inventory))


def hosts_entries(inventory: Inventory) -> Command:
    """The servers' sequential names in /etc/hosts, in a block mmdeploy owns (its lines end
    with the mark); written in place, as /etc/hosts may be a bind mount."""
    block = hosts_block(inventory)
    wanted = shlex.quote(block)
    mark = shlex.quote(f" {HOSTS_MARK}$")
    script = (
        f"set -e\ntmp=$(mktemp)\ntrap 'rm -f \"$tmp\"' EXIT\n"
        f'grep -v {mark} /etc/hosts > "$tmp" || true\nprintf \'%s\' {wanted} >> "$tmp"\n'
        f'cat "$tmp" > /etc/hosts\n'
    )
    # $(...) drops the final newline, so the block is compared without its own.
    return Command(
        "MinIO host names in /etc/hosts",
        script,
        unless=f'test "$(grep {mark} /etc/hosts)" = {shlex.quote(block.rstrip())}',
    )


class MinIO(Component):
    name = "minio"
    roles = ("storage",)
    secrets = (ACCESS_KEY, SECRET_KEY)
    metrics = (Metrics("minio", common.s3_port, path="/minio/v2/metrics/node"),)
    balanced = (Balanced("storage", port=common.s3_port, health="/minio/health/live"),)
    # The servers of a distributed MinIO talk on the S3 port; verify asks each directly.
    ports = (Port("minio", lambda h: common.s3_port(h.settings), (PEERS, CONTROL)),)
    after = ("base",)

    def hosts(self, inventory):
        return inventory.with_role("storage") if enabled(inventory) else []

    def steps(self, ctx: Context):
        s = ctx.settings
        restart = ("restart",)
        data = data_dir(s)
        steps = [
            Group(USER),
            User(USER, home=data),
            Binary(artifact(s), binary(s), fetch_on_host=s.storage.fetch_on_host, notify=restart),
            Directory(data, owner=USER, group=USER, mode="0750"),
            *[
                Directory(f"{data}/data{i}", owner=USER, group=USER, mode="0750")
                for i in range(1, s.storage.minio_drives + 1)
            ],
            SecretFile(ENV_FILE, environment(ctx), group=USER, mode="0640", notify=restart),
            unit(
                "minio.service",
                ctx.render("minio/minio.service.j2", minio=binary(s), env_file=ENV_FILE, user=USER, workdir=data),
                notify=restart,
            ),
            Service("minio"),
        ]
        if len(ctx.inventory.with_role("storage")) > 1:
            steps.insert(0, hosts_entries(ctx.inventory))
        if ctx.host == self.hosts(ctx.inventory)[0]:
            steps += common.bucket_steps(s, ctx.host, ENV_FILE)
        return steps

    def handlers(self, ctx: Context):
        return {"restart": Command("restart minio", "systemctl restart minio", timeout=180)}

    def checks(self, inventory):
        servers = self.hosts(inventory)
        if not servers:
            return []
        port = common.s3_port(inventory.settings)
        return [
            *(
                Check(f"MinIO live on {h.name}", _answers(f"http://{h.address}:{port}/minio/health/live"), h.name)
                for h in servers
            ),
            Check(
                "MinIO cluster has write quorum",
                _answers(f"http://{(live(servers) or servers)[0].address}:{port}/minio/health/cluster"),
            ),
            *common.s3_checks(inventory, servers),
        ]


def _answers(url: str):
    def check() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return None if r.status == 200 else f"{url}: HTTP {r.status}"
        except OSError as e:
            return f"{url}: {e}"

    return check


COMPONENTS = [MinIO()]
