"""Search: OpenSearch (the default) or Elasticsearch on the `search` hosts, the engine behind
Mattermost's ElasticsearchSettings (Backend "opensearch" for OpenSearch 2.x/3.x).

Installed from the engine's release tarball (URL + sha256), unpacked side by side under
/opt/<engine>-releases/<version> and activated by pointing /opt/<engine> at it, so the
previous release stays on disk for a rollback. Configuration lives in /etc/<engine>
(<engine>.yml, jvm.options with the release's JVM flags and the log and heap-dump paths
moved to /var/log and /var/lib, jvm.options.d/heap.options, the keystore), data in
/var/lib/<engine>, logs in /var/log/<engine>; the node runs as the system user <engine>
under a systemd unit. Java: the release's own jdk/ (the official tarballs bring one), or
Debian's OpenJDK linked in as jdk/ when the archive has none. The analysis-icu plugin
(Mattermost's index templates use icu_tokenizer and icu_normalizer) is installed into every
release from its own zip (URL + sha256) before the release goes live.

Layout and quorum:
- One search host (single pattern): a single node (`discovery.type: single-node`).
- Two search hosts: two data nodes cannot keep a quorum when one dies, so a third,
  data-less cluster-manager node (the tiebreaker; OpenSearch has no voting-only role,
  Elasticsearch's is used) runs on the first host with role monitoring, else jobserver,
  that is not a search host; its HTTP API listens on the loopback interface only (it
  serves no clients). Validation refuses two search hosts without one.
- Three or more: every search host is a cluster-manager-eligible data node.
Every index gets `search.replicas` replicas (default: 1, or 0 on a single node), so one
node's loss loses no index data; validation refuses a layout that would (0 replicas on
several nodes) or that could never be green (more replicas than other nodes).

`cluster.initial_cluster_manager_nodes` is written only until the cluster first forms: a
deploy reads whether any node already belongs to a formed cluster (its cluster UUID), and
the first deploy removes the setting once its cluster formed, as OpenSearch's and
Elasticsearch's documentation ask (left in place, two nodes that lost their data could
bootstrap a second cluster).

A configuration change restarts the nodes one at a time: a node of a green cluster must
be green again before the next one restarts (a first start is never restarted again).

Clients (the app servers and the job server) reach the layer through the internal balancer
(balancer.endpoint(inventory, "search")), which spreads requests over the data nodes. The
listener is on the private address only and has no authentication: OpenSearch's security
plugin (TLS, users) is not installed by this component (see the README).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from pydantic import Field

from ..grammar import Source, hostport
from ..artifacts import Artifact
from ..component import PEERS, Balanced, Check, Component, Context, Metrics, Port, Role, Warn, down_hosts, live
from ..errors import MMDeployError
from ..facts import Fact
from ..inventory import Host, Inventory
from ..ops import NOW, Command, Directory, File, Group, OneAtATime, Service, Sysctl, Unpacked, User, started_since, unit
from ..ops.apt import install_script
from ..ops.archive import MARKER, delivered
from ..ops.exporter import env_file, exporter_handlers, exporter_steps, listen_flag
from ..remote import Remote
from ..settings import Section
from ..step import Change, Step, run_checked

EXPORTER = "prometheus-elasticsearch-exporter"
EXPORTER_PORT = 9114  # the Debian package's default
MAX_MAP_COUNT = 262144  # the engines' bootstrap check on a non-loopback address
NOFILE = 65535  # the engines' bootstrap check: at least this many open files
HEAP_CAP_MB = 31744  # below 32 GB the JVM keeps compressed object pointers
START_WAIT = 180  # seconds a node may take to answer HTTP after a (re)start
GREEN_WAIT = 300  # seconds a restarted node's cluster may take to be green again
# Seconds a new cluster may take to form on the first deploy. Its nodes start the component
# together, but one that gets to its start first waits here for the others to get to
# theirs (on slow hosts each unpacks a release, installs a plugin and starts a JVM for
# minutes): the test bed's multi deploy, sharing two cores with another, needed over 240.
FORM_WAIT = 600
RESTART = ("restart",)
# The facts steps() reads besides the host facts: the open-file limit systemd can grant,
# and the host's clock (a node started after it runs this run's configuration).
HARD_NOFILE = "ulimit -Hn"


@dataclass(frozen=True)
class Engine:
    """What differs between OpenSearch and Elasticsearch; paths follow the engine's name."""

    name: str
    title: str
    env: str  # prefix of the launcher's variables: <env>_HOME, _PATH_CONF, _JAVA_HOME
    manager_role: str
    tiebreaker_roles: tuple[str, ...]
    bootstrap_key: str
    manager_cat: str  # the _cat API that names the elected cluster manager
    default_version: str | None
    tarball: str  # official URLs, with {v} for the version
    icu: str

    @property
    def home(self) -> str:
        return f"/opt/{self.name}"

    @property
    def releases(self) -> str:
        return f"/opt/{self.name}-releases"

    @property
    def conf(self) -> str:
        return f"/etc/{self.name}"

    @property
    def config_file(self) -> str:
        return f"{self.conf}/{self.name}.yml"

    @property
    def data(self) -> str:
        return f"/var/lib/{self.name}"

    @property
    def logs(self) -> str:
        return f"/var/log/{self.name}"

    @property
    def user(self) -> str:
        return self.name


ENGINES = {
    "opensearch": Engine(
        "opensearch",
        "OpenSearch",
        "OPENSEARCH",
        "cluster_manager",
        ("cluster_manager",),
        "cluster.initial_cluster_manager_nodes",
        "cluster_manager",
        "2.19.6",
        "https://artifacts.opensearch.org/releases/bundle/opensearch/{v}/opensearch-{v}-linux-x64.tar.gz",
        "https://artifacts.opensearch.org/releases/plugins/analysis-icu/{v}/analysis-icu-{v}.zip",
    ),
    "elasticsearch": Engine(
        "elasticsearch",
        "Elasticsearch",
        "ES",
        "master",
        ("master", "voting_only"),
        "cluster.initial_master_nodes",
        "master",
        None,
        "https://artifacts.elastic.co/downloads/elasticsearch/elasticsearch-{v}-linux-x86_64.tar.gz",
        "https://artifacts.elastic.co/downloads/elasticsearch-plugins/analysis-icu/analysis-icu-{v}.zip",
    ),
}

SHA256 = r"^[0-9a-f]{64}$"


class SearchSettings(Section):
    """The search cluster (components/search.py). Mattermost reaches it at
    balancer.endpoint(inventory, "search") with Backend = engine."""

    engine: Literal["opensearch", "elasticsearch"] = "opensearch"
    # The engine's release (unset: OpenSearch 2.19.6; required for Elasticsearch).
    version: str | None = Field(default=None, pattern=r"^\d+\.\d+\.\d+$")
    # The release tarball: the official URL unless a mirror or local file is given; the
    # sha256 is required (published beside the tarball as <file>.sha512/.sha256).
    url: Source | None = None
    sha256: str | None = Field(default=None, pattern=SHA256)
    # The analysis-icu plugin zip of the same version (Mattermost's index templates need it).
    icu_url: Source | None = None
    icu_sha256: str | None = Field(default=None, pattern=SHA256)
    fetch_on_host: bool = False  # hosts download the archives themselves instead of an upload
    cluster_name: str = Field(default="mattermost", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    port: int = Field(default=9200, ge=1, le=65535)  # HTTP, on the private address
    transport_port: int = Field(default=9300, ge=1, le=65535)  # node to node
    # JVM heap of a data node (unset: half the host's memory, a quarter when the host has
    # other roles too; at most 31 GB). Production also wants swap off or bootstrap.memory_lock.
    heap_mb: int | None = Field(default=None, ge=256, le=HEAP_CAP_MB)
    # JVM heap of the data-less tiebreaker beside two search hosts.
    manager_heap_mb: int = Field(default=512, ge=128, le=HEAP_CAP_MB)
    # Replicas of every index (unset: 1, or 0 on a single node). Mattermost creates its own
    # indexes from templates: its ElasticsearchSettings.*IndexReplicas take this value.
    replicas: int | None = Field(default=None, ge=0, le=10)

    def engine_spec(self) -> Engine:
        return ENGINES[self.engine]

    def release_version(self) -> str:
        version = self.version or self.engine_spec().default_version
        if version is None:
            raise MMDeployError(f"settings.search.version is required with engine {self.engine}")
        return version

    def replicas_for(self, data_nodes: int) -> int:
        """Replicas of every index on a cluster of `data_nodes` data nodes: what Mattermost's
        PostIndexReplicas, ChannelIndexReplicas and UserIndexReplicas should be."""
        if self.replicas is not None:
            return self.replicas
        return 0 if data_nodes < 2 else 1


def tiebreaker(inventory: Inventory) -> Host | None:
    """The data-less cluster-manager node beside exactly two search hosts: the first host
    with role monitoring, else jobserver, that is not a search host."""
    if len(inventory.with_role("search")) != 2:
        return None
    for role in ("monitoring", "jobserver"):
        for h in inventory.hosts:
            if h.has(role) and not h.has("search"):
                return h
    return None


def cluster_nodes(inventory: Inventory) -> list[Host]:
    """Every node of the search cluster: the search hosts (data nodes) in inventory order,
    then the tiebreaker when there is one."""
    extra = tiebreaker(inventory)
    return inventory.with_role("search") + ([extra] if extra else [])


def seeds_file(nodes: list[Host], port: int) -> str:
    """unicast_hosts.txt, the file-based seed provider's list: every node's transport address."""
    lines = "".join(f"{hostport(h.private_address, port)}\n" for h in nodes)
    return f"# Managed by mmdeploy (components/search.py): the cluster's nodes, re-read on change.\n{lines}"


def heap_mb(host: Host, mem_kb: int) -> int:
    """The node's JVM heap: the setting, else half the host's memory (OpenSearch's and
    Elasticsearch's guidance), a quarter when the host has other roles; 31 GB at most."""
    s = host.settings.search
    if not host.has("search"):
        return s.manager_heap_mb
    if s.heap_mb is not None:
        return s.heap_mb
    share = 2 if set(host.roles) == {"search"} else 4
    return max(256, min(HEAP_CAP_MB, mem_kb // 1024 // share))


def nofile_limit(hard: str) -> int:
    """LimitNOFILE for the unit: what the engines require, or the host's hard limit when it
    is lower (systemd cannot raise a service above it; production hosts allow 65535)."""
    hard = hard.strip()
    if hard.isdigit():
        return min(NOFILE, int(hard))
    return NOFILE  # "unlimited"


def url_of(host: Host) -> str:
    """The node's HTTP API as seen on the node itself (the tiebreaker's is on loopback)."""
    address = host.private_address if host.has("search") else "127.0.0.1"
    return f"http://{hostport(address, host.settings.search.port)}"


def artifacts(settings: Any) -> tuple[Artifact, Artifact]:
    """The release tarball and its analysis-icu plugin zip; both need their sha256."""
    s = settings.search
    e, version = s.engine_spec(), s.release_version()
    missing = [key for key, value in (("sha256", s.sha256), ("icu_sha256", s.icu_sha256)) if not value]
    if missing:
        raise MMDeployError(
            f"settings.search.{' and settings.search.'.join(missing)} required: the SHA-256 of "
            f"{e.title} {version}'s tarball ({e.tarball.format(v=version)}) and of its analysis-icu "
            f"plugin ({e.icu.format(v=version)}), or of the mirror's files given as url/icu_url"
        )
    return (
        Artifact(e.name, version, s.url or e.tarball.format(v=version), s.sha256),
        Artifact(f"{e.name}-analysis-icu", version, s.icu_url or e.icu.format(v=version), s.icu_sha256),
    )


@dataclass(frozen=True)
class ClusterState:
    """What prepare() read across the nodes: whether the cluster ever formed."""

    formed: bool


class Search(Component):
    name = "search"
    roles = ("search",)
    owns_roles = (Role("search", "search nodes (OpenSearch or Elasticsearch)", {"multi": 2, "cluster": 3}),)
    settings = {"search": SearchSettings}
    metrics = (Metrics("search", EXPORTER_PORT, when=lambda h: h.has("search")),)
    # Only the data nodes serve clients; the health check fails when the node has no
    # elected cluster manager (an isolated node would answer, but not with the cluster).
    balanced = (
        Balanced(
            "search",
            port=lambda s: s.search.port,
            health="/_cluster/health?master_timeout=2s",
            when=lambda h: h.has("search"),
        ),
    )
    # Node to node, the tiebreaker included.
    ports = (Port("search transport", lambda h: h.settings.search.transport_port, (PEERS,)),)
    after = ("base",)

    def hosts(self, inventory: Inventory) -> list[Host]:
        return cluster_nodes(inventory)

    def validate(self, settings):
        if settings.search.engine == "elasticsearch" and not settings.search.version:
            return [("search.version", "required with engine 'elasticsearch' (the release, e.g. 8.19.3)")]
        return []

    def validate_layout(self, inventory: Inventory) -> list[tuple[str, str]]:
        search = inventory.with_role("search")
        if not search:
            return []
        problems = []
        if len(search) == 2 and tiebreaker(inventory) is None:
            problems.append(
                (
                    "hosts",
                    "2 search hosts cannot keep a quorum when one of them dies: add a third "
                    "search host, or give role monitoring or jobserver to a host that is not a "
                    "search host (it runs a data-less cluster-manager tiebreaker)",
                )
            )
        replicas = inventory.settings.search.replicas
        if replicas is not None and replicas > len(search) - 1:
            problems.append(
                (
                    "settings.search.replicas",
                    f"{replicas} replica(s) of every index need {replicas + 1} search hosts, found "
                    f"{len(search)}: the cluster would never be green",
                )
            )
        if replicas == 0 and len(search) > 1:
            problems.append(
                (
                    "settings.search.replicas",
                    f"0 replicas on {len(search)} search hosts: losing one would lose the index data "
                    "on it; use 1 (or more)",
                )
            )
        return problems

    def build_facts(self, host: Host) -> list[str]:
        return [HARD_NOFILE, NOW]

    def prepare(self, inventory: Inventory, view) -> ClusterState:
        formed = False
        for h in cluster_nodes(inventory):
            probe = f"curl -s -m 3 {url_of(h)}/"
            try:
                fact = view.facts(h, [probe])[probe]
            except MMDeployError:
                continue  # a host that does not answer tells nothing
            if _cluster_uuid(fact.out) not in (None, "_na_"):
                formed = True
        return ClusterState(formed)

    def steps(self, ctx: Context):
        s, host, inventory = ctx.settings.search, ctx.host, ctx.inventory
        e, version = s.engine_spec(), s.release_version()
        tarball, icu = artifacts(ctx.settings)
        release = f"{e.releases}/{version}"
        nodes = cluster_nodes(inventory)
        data_nodes = [h for h in nodes if h.has("search")]
        single = len(nodes) == 1
        bootstrap = not single and not ctx.shared.formed
        facts = ctx.facts.get([HARD_NOFILE])
        env = f"{e.env}_PATH_CONF={e.conf} {e.env}_JAVA_HOME={release}/jdk"
        keystore = f"{e.conf}/{e.name}.keystore"
        config = ctx.render(
            f"search/{e.name}.yml.j2",
            engine=e,
            roles=list(e.tiebreaker_roles) if not host.has("search") else [e.manager_role, "data"],
            single=single,
            bootstrap=[h.name for h in nodes] if bootstrap else [],
            replicas=s.replicas_for(len(data_nodes)),
        )
        heap = heap_mb(host, int(ctx.facts.host("mem_kb")))
        steps: list[Step] = [
            Group(e.user),
            User(e.user, home=e.home),
            Directory(e.releases),
            Unpacked(tarball, release, fetch_on_host=s.fetch_on_host),
            JavaRuntime(release, ctx.facts.host("os")),
            Plugin(e, icu, release, s.fetch_on_host),
            Directory(e.conf, owner="root", group=e.user, mode="0750"),
            Directory(f"{e.conf}/jvm.options.d", owner="root", group=e.user, mode="0750"),
            _release_config(e, release, version),
            Command(
                f"keystore {keystore}",
                f"set -e\n{env} {release}/bin/{e.name}-keystore create\n"
                f"chown root:{e.user} {keystore}\nchmod 0660 {keystore}\n",
                unless=f"test -f {keystore}",
                timeout=120,
            ),
            File(e.config_file, config, group=e.user, mode="0640", notify=RESTART),
            # Re-read by the running node: no restart (growing the cluster restarts no node).
            File(f"{e.conf}/unicast_hosts.txt", seeds_file(nodes, s.transport_port), group=e.user, mode="0640"),
            File(
                f"{e.conf}/jvm.options.d/heap.options",
                f"-Xms{heap}m\n-Xmx{heap}m\n",
                group=e.user,
                mode="0640",
                notify=RESTART,
            ),
            Directory(e.data, owner=e.user, group=e.user, mode="0750"),
            Directory(e.logs, owner=e.user, group=e.user, mode="0750"),
            # The keystore format may change between releases: upgraded when another release
            # was live (the tool refuses when it is current already; the node says when not).
            Command(
                f"activate release {version}",
                f"set -e\nprevious=$(readlink {e.home} || true)\nln -sfn {release} {e.home}\n"
                f'if [ -n "$previous" ]; then\n'
                f"  {env} {release}/bin/{e.name}-keystore upgrade >/dev/null 2>&1 || true\n"
                f"  chown root:{e.user} {keystore}\n  chmod 0660 {keystore}\nfi\n",
                unless=f'test "$(readlink {e.home})" = {release}',
                notify=RESTART,
                timeout=120,
            ),
            Sysctl("vm.max_map_count", MAX_MAP_COUNT, minimum=True),
            unit(
                f"{e.name}.service",
                ctx.render("search/search.service.j2", engine=e, nofile=nofile_limit(facts[HARD_NOFILE].out)),
                notify=RESTART,
            ),
            Service(e.name),
        ]
        if bootstrap:
            steps.append(_bootstrap_done(e, host))
        if host.has("search"):
            args = f"--es.uri={url_of(host)} --es.timeout=10s {listen_flag(host.private_address, EXPORTER_PORT)}"
            steps += exporter_steps(EXPORTER, env_file("components/search", ARGS=args), secret=False)
        return steps

    def handlers(self, ctx: Context):
        e = ctx.settings.search.engine_spec()
        now = int(ctx.facts.get([NOW])[NOW].out.strip())
        handlers: dict[str, Step] = {
            "restart": RollingRestart(
                e, ctx.host, started_after=now, key=f"{ctx.inventory.path.resolve()}:{ctx.settings.search.cluster_name}"
            )
        }
        if ctx.host.has("search"):
            handlers.update(exporter_handlers(EXPORTER))
        return handlers

    def retire(self, ctx: Context):
        # A node that is no longer one (the tiebreaker, once there are three search hosts):
        # its voting place already went to the nodes left (see _QUORUM_KEPT).
        e = ctx.settings.search.engine_spec()
        return [Service(e.name, enabled=False, running=False), Service(EXPORTER, enabled=False, running=False)]

    def checks(self, inventory: Inventory) -> list[Check]:
        nodes = cluster_nodes(inventory)
        if not nodes:
            return []
        s = inventory.settings.search
        return [
            Check(
                f"search cluster {s.cluster_name}: green, {len(nodes)} node(s), one elected cluster manager",
                lambda: cluster_problem(inventory),
            )
        ]


def _cluster_uuid(text: str) -> str | None:
    try:
        return json.loads(text).get("cluster_uuid")
    except (ValueError, AttributeError):
        return None


def _release_config(e: Engine, release: str, version: str) -> Command:
    """jvm.options and log4j2.properties of the release into the configuration directory,
    with the JVM's relative log and heap-dump paths (logs/, data) made absolute: the
    release tree is root's and read-only to the node."""
    sed = f"sed -e 's#logs/#{e.logs}/#g' -e 's#HeapDumpPath=data#HeapDumpPath={e.data}#'"
    src, conf = f"{release}/config", e.conf
    return Command(
        f"jvm.options and log4j2.properties of release {version}",
        f"set -e\n{sed} {src}/jvm.options > {conf}/.jvm.options.new\n"
        f"install -o root -g {e.user} -m 0640 {conf}/.jvm.options.new {conf}/jvm.options\n"
        f"rm -f {conf}/.jvm.options.new\n"
        f"install -o root -g {e.user} -m 0640 {src}/log4j2.properties {conf}/log4j2.properties\n",
        unless=f"cmp -s <({sed} {src}/jvm.options) {conf}/jvm.options && "
        f"cmp -s {src}/log4j2.properties {conf}/log4j2.properties",
        notify=RESTART,
    )


def _bootstrap_done(e: Engine, host: Host) -> Command:
    """Once the new cluster formed (the node reports its cluster UUID), the bootstrap
    setting is removed from the node's configuration; no restart: it is only read when a
    node that never joined a cluster starts."""
    url, key = url_of(host), e.bootstrap_key
    return Command(
        f"cluster formed: {key} removed",
        f"""set -e
uuid=
end=$((SECONDS + {FORM_WAIT}))
while [ $SECONDS -lt $end ]; do
  uuid=$(curl -s -m 3 {url}/ | sed -n 's/.*"cluster_uuid" *: *"\\([^"]*\\)".*/\\1/p') || true
  if [ -n "$uuid" ] && [ "$uuid" != _na_ ]; then break; fi
  sleep 1
done
if [ -z "$uuid" ] || [ "$uuid" = _na_ ]; then
  echo "the {e.title} cluster did not form within {FORM_WAIT} s: see journalctl -u {e.name} and {e.logs}/" >&2
  exit 1
fi
sed -i -e '/^# Only until the cluster first forms/d' -e '/^{key}:/d' {e.config_file}
""",
        unless=f"! grep '^{key}:' {e.config_file} >/dev/null",
        timeout=FORM_WAIT + 60,
    )


class JavaRuntime(Step):
    """A Java runtime as the release's jdk/: its own (official tarballs bring one), or
    Debian's OpenJDK headless runtime linked in its place when the archive has none."""

    timeout = 1800  # an apt transaction (see Packages)

    def __init__(self, release: str, os_fact: str):
        self.release = release
        from .. import distros

        # The distribution's runtime from the one map (distros.py): openjdk-<N>-jre-headless.
        self.package = distros.of(os_fact).java
        self.java = int(self.package.split("-")[1])
        self.name = f"Java runtime in {release}/jdk"
        self._probe = f"test -f {release}/{MARKER} && echo unpacked; test -x {release}/jdk/bin/java && echo java"

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        found = facts[self._probe].out.split()
        if "java" in found:
            return None
        if "unpacked" not in found:
            return Change(f"once unpacked: the release's jdk/, else {self.package} linked as jdk/")
        return Change(f"install {self.package}, link it as jdk/ (the release brings no JDK)")

    def apply(self, remote: Remote, change: Change) -> None:
        script = (
            f"if [ -x {self.release}/jdk/bin/java ]; then exit 0; fi\nset -e\n"
            f"{install_script(self.package)}"
            f"ln -sfn /usr/lib/jvm/java-{self.java}-openjdk-$(dpkg --print-architecture) {self.release}/jdk\n"
            f"{self.release}/jdk/bin/java -version\n"
        )
        run_checked(remote, script, self.name, timeout=self.timeout)


class Plugin(Step):
    """The analysis-icu plugin installed into a release with the engine's own plugin tool,
    from its zip (sha256 checked on the host), before the release goes live."""

    timeout = 600

    def __init__(self, engine: Engine, artifact: Artifact, release: str, fetch_on_host: bool):
        self.engine, self.artifact, self.release, self.fetch_on_host = engine, artifact, release, fetch_on_host
        self.name = f"plugin analysis-icu {artifact.version} in {release}"
        self.marker = f"{release}/.mmdeploy-analysis-icu"
        self._probe = f"cat {self.marker}"

    def facts(self) -> list[str]:
        return [self._probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        if facts[self._probe].out.strip() == self.artifact.sha256:
            return None
        return Change(f"install {self.artifact.filename} (sha256 {self.artifact.sha256[:12]})")

    def apply(self, remote: Remote, change: Change) -> None:
        e, a = self.engine, self.artifact
        tmp, opening = delivered(remote, a, self.fetch_on_host)
        # The release's own config/ serves the tool: the plugin needs nothing from /etc.
        tool = (
            f"{e.env}_PATH_CONF={self.release}/config {e.env}_JAVA_HOME={self.release}/jdk "
            f"{self.release}/bin/{e.name}-plugin"
        )
        script = (
            f"{opening}"
            f"if [ -d {self.release}/plugins/analysis-icu ]; then {tool} remove analysis-icu; fi\n"
            f"{tool} install --batch file://{tmp}\n"
            f"echo {a.sha256} > {self.marker}\n"
        )
        run_checked(remote, script, self.name, timeout=self.timeout)


# Waits (up to its third argument, in seconds) until restarting the node named by the
# second would keep a quorum of the cluster's voting configuration: more than half of the
# voting nodes are in the cluster besides it. A node that joins this run (growing two
# search hosts and their tiebreaker into three search hosts: the firewall has already cut
# the tiebreaker off) first has to take its place in the configuration. A cluster whose
# state cannot be read (no elected manager) has no quorum to keep: the restart goes ahead.
_QUORUM_KEPT = """\
python3 - {url} {name} {wait} <<'MMDEPLOY_PY'
import json, sys, time, urllib.request
url, me, wait = sys.argv[1], sys.argv[2], int(sys.argv[3])
path = "/_cluster/state/metadata,nodes?filter_path=metadata.cluster_coordination.last_committed_config,nodes.*.name"
for attempt in range(wait):
    try:
        with urllib.request.urlopen(url + path, timeout=5) as r:
            state = json.load(r)
        voting = state["metadata"]["cluster_coordination"]["last_committed_config"]
        names = {{node: value["name"] for node, value in state["nodes"].items()}}
    except (OSError, ValueError, KeyError):
        sys.exit(0)
    others = sorted(names[v] for v in voting if v in names and names[v] != me)
    if len(voting) <= 1 or len(others) > len(voting) // 2:
        sys.exit(0)
    time.sleep(1)
print(f"restarting {{me}} would leave {{len(others)}} of the {{len(voting)}} voting nodes "
      f"({{', '.join(others) or 'none'}}): no quorum; waited {{wait}} s for another node to join", file=sys.stderr)
sys.exit(1)
MMDEPLOY_PY
"""


class RollingRestart(OneAtATime):
    """The restart handler: one node of a cluster at a time (a lock shared by the run's
    hosts). A node this run started already runs the new configuration and is left alone;
    a node restarts only when the others keep a quorum without it (_QUORUM_KEPT); a node
    of a green cluster must see it green again before the lock passes on."""

    def __init__(self, e: Engine, host: Host, *, started_after: int, key: str):
        url = url_of(host)
        script = f"""set -e
if {started_since(e.name, started_after)}; then
  echo "{e.name} was started by this run: it runs the new configuration"
  exit 0
fi
{_QUORUM_KEPT.format(url=url, name=host.name, wait=FORM_WAIT)}green=no
if curl -s -m 10 {url}/_cluster/health | grep '"status":"green"' >/dev/null; then green=yes; fi
systemctl restart {e.name}
for i in $(seq {START_WAIT}); do
  if curl -s -m 2 -o /dev/null {url}/; then break; fi
  sleep 1
done
curl -s -m 2 -o /dev/null {url}/ || {{ echo "{e.name} did not answer on {url} within {START_WAIT} s" >&2; exit 1; }}
if [ $green = yes ]; then
  health=$(curl -s -m {GREEN_WAIT + 20} "{url}/_cluster/health?wait_for_status=green&timeout={GREEN_WAIT}s")
  if ! echo "$health" | grep '"status":"green"' >/dev/null; then
    echo "the cluster was green before {host.name} restarted and is not {GREEN_WAIT} s later: $health" >&2
    exit 1
  fi
fi
"""
        super().__init__(
            f"restart {e.name} (one node at a time)", script, key=key, timeout=FORM_WAIT + START_WAIT + GREEN_WAIT + 120
        )


# --- verify --------------------------------------------------------------------------------


def _node_get(host: Host, path: str, timeout: int = 15) -> Any:
    """GET a node's API over SSH on the node (its listener is on the private network)."""
    from ..secrets import Redactor

    remote = Remote(host, Redactor())
    try:
        result = remote.run(
            f"curl -s -f -m {timeout} {shlex.quote(url_of(host) + path)}", timeout=timeout + 10, what=f"GET {path}"
        )
    finally:
        remote.close()
    if not result.ok:
        raise MMDeployError(f"{host.name}: GET {path} failed (curl exit {result.rc}) {result.stderr.strip()}")
    return json.loads(result.stdout)


def cluster_problem(inventory: Inventory, wait: int = 60) -> str | None:
    """Green, every node in the cluster, exactly one elected cluster manager among them;
    asked of the first data node that answers. While verify finds a node down, yellow
    (its replicas not yet reassigned) is a warning; red stays a failure."""
    nodes = cluster_nodes(inventory)
    gone = sorted(n.name for n in nodes if n.name in down_hosts())
    e = inventory.settings.search.engine_spec()
    errors = []
    for h in live([n for n in nodes if n.has("search")]):
        try:
            health = _node_get(
                h,
                f"/_cluster/health?wait_for_status={'yellow' if gone else 'green'}&timeout={wait}s",
                timeout=wait + 10,
            )
            names = {row["name"] for row in _node_get(h, "/_cat/nodes?format=json&h=name")}
            managers = [row.get("node") for row in _node_get(h, f"/_cat/{e.manager_cat}?format=json")]
        except (MMDeployError, ValueError, KeyError, TypeError) as err:
            errors.append(str(err))
            continue
        problems = []
        status = health.get("status")
        if status != "green" and not (gone and status == "yellow"):
            problems.append(f"status {status} ({health.get('unassigned_shards')} unassigned shards)")
        missing = sorted({n.name for n in nodes} - names - set(gone))
        if missing:
            problems.append(f"not in the cluster: {', '.join(missing)}")
        if len(managers) != 1 or managers[0] not in names:
            problems.append(f"elected cluster manager: {managers or 'none'}")
        if problems:
            return "; ".join(problems)
        if gone:
            shards = f" ({health.get('unassigned_shards')} replica shards unassigned)" if status == "yellow" else ""
            return Warn(f"{status}{shards}, {', '.join(gone)} down")
        return None
    return "no search node answered: " + "; ".join(errors)


COMPONENTS = [Search()]
