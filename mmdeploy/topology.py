"""The deployment as a picture, as the founding report's figures draw its patterns: hosts
grouped by layer, the floating addresses, the balancers, and the flows between layers
(HTTPS, gossip, SQL and its replication, S3, search, push, metrics) with their ports.

`build(inventory, live)` makes the graph (a plain model: nodes, layers and flows) from
the inventory and the component declarations (component.Balanced -> client -> balancer
-> layer flows, component.Metrics -> flows from the monitoring host, roles -> layers);
`read_live(inventory)` adds what the hosts say right now (which host holds each floating
address, the DB primary and replicas from the DB tier's one brain, hosts that do not
answer); `render(graph, path)` draws it with Graphviz (`dot`, Debian's graphviz package,
through the `graphviz` Python package).

`build(inventory, firewall=True)` draws the host firewall's flow matrix instead
(registry.flows, what components/firewall.py allows inbound): an edge from each source
(anyone, the control machine, firewall.admin_cidrs, a settings list, a layer of hosts) to
each layer it may reach, labelled with the ports; every other inbound port is dropped.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .component import ADMIN, ANYONE, CONTROL
from .errors import MMDeployError
from .inventory import Host, Inventory

if TYPE_CHECKING:
    import graphviz

    from .dbtier import NodeState

# Layers top to bottom; a host sits in the layer of its first role in this order.
LAYERS = ("proxy", "app", "jobserver", "db", "search", "storage", "pushproxy", "monitoring")
LAYER_LABELS = {
    "proxy": "Load balancing (NGINX)",
    "app": "Mattermost app servers",
    "jobserver": "Job server",
    "db": "Database",
    "search": "Search (OpenSearch)",
    "storage": "File storage (S3)",
    "pushproxy": "Push proxy",
    "monitoring": "Monitoring (Prometheus)",
}
# Mattermost's cluster gossip (ClusterSettings.GossipPort's default).
GOSSIP_PORT = 8074
DB_PORTS = {"postgresql": 5432, "mysql": 3306}
# Layers whose component does not declare component.Balanced yet: the service's default
# port, reached directly by the app and job servers.
ROLE_FLOWS = {"search": ("search", 9200), "storage": ("s3", 8333), "pushproxy": ("push", 8066)}
# A Balanced layer's name -> the flow kind drawn.
BALANCED_KINDS = {"search": "search", "storage": "s3", "s3": "s3", "pushproxy": "push", "push": "push"}
COLORS = {
    "https": "darkgreen",
    "http": "forestgreen",
    "gossip": "purple",
    "sql": "blue3",
    "replication": "navy",
    "s3": "darkorange3",
    "search": "goldenrod3",
    "push": "deeppink3",
    "metrics": "gray45",
    "vip": "red3",
    "allow": "black",
    "ssh": "gray30",
    "scrape": "gray45",
}
# The firewall view's sources that are no host of the inventory (component.ANYONE, CONTROL,
# ADMIN; a "settings.<section>.<key>" list gets a node of its own).
SOURCE_NODES = {
    ANYONE: ("users", "Anyone"),
    CONTROL: ("control", "Control machine\n(mmdeploy)"),
    ADMIN: ("admins", "firewall.admin_cidrs"),
}


@dataclass
class Node:
    id: str
    label: str
    layer: str  # a LAYERS entry, or "clients" / "vips"
    kind: str = "host"  # host | vip | balancer | clients
    state: str = "unknown"  # up | down | unknown (not read)
    notes: list[str] = field(default_factory=list)  # live state: primary, replica, holds VIP ...


@dataclass(frozen=True)
class Flow:
    """Traffic of one kind from one end to the other; an end is a node id or 'layer:<name>'
    (the whole layer)."""

    kind: str  # https http gossip sql replication s3 search push metrics vip
    src: str
    dst: str
    port: int | None
    note: str = ""

    @property
    def label(self) -> str:
        if self.kind in ("allow", "ssh", "scrape"):
            return self.note  # the firewall view: the ports it allows
        text = self.kind if self.port is None else f"{self.kind} :{self.port}"
        return f"{text} {self.note}".strip()


@dataclass
class Graph:
    title: str
    nodes: dict[str, Node]
    flows: list[Flow]
    live: bool = False

    def layer(self, name: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.layer == name]


@dataclass
class LiveState:
    down: dict[str, str] = field(default_factory=dict)  # host -> why it did not answer
    vip_holders: dict[str, str | None] = field(default_factory=dict)  # floating address -> host
    db: dict[str, NodeState] = field(default_factory=dict)


def layer_of(host: Host) -> str:
    return next((r for r in LAYERS if host.has(r)), host.roles[0])


def vip_id(vip: str) -> str:
    """A floating address's node id: no ':' (Graphviz reads node:port), no dots."""
    return "vip_" + vip.replace(".", "_").replace(":", "_")


def _is_layer(inventory: Inventory, name: str) -> bool:
    return any(layer_of(h) == name for h in inventory.hosts)


def _vips(inventory: Inventory) -> list[str]:
    proxy = getattr(inventory.settings, "proxy", None)
    return proxy.addresses if proxy is not None else []


def _host_nodes(inventory: Inventory) -> dict[str, Node]:
    nodes = {}
    for h in inventory.hosts:
        label = f"{h.name}\n{h.private_address}" + (f" ({h.address})" if h.address != h.private_address else "")
        extra = [r for r in h.roles if r != layer_of(h)]
        if extra:
            label += "\n+ " + ", ".join(extra)
        nodes[h.name] = Node(h.name, label, layer_of(h))
    return nodes


def build(inventory: Inventory, live: LiveState | None = None, firewall: bool = False) -> Graph:
    """The graph of `inventory`, annotated with `live` when given; with `firewall`, the
    flows are the host firewall's matrix (firewall_view)."""
    from .registry import registry

    if firewall:
        graph = firewall_view(inventory)
        if live is not None:
            graph.live = True
            _annotate(graph, inventory, live)
        return graph
    s = inventory.settings
    nodes: dict[str, Node] = {"users": Node("users", "Users\n(browsers, mobile apps)", "clients", "clients")}
    nodes.update(_host_nodes(inventory))
    flows: list[Flow] = []
    proxies, apps = inventory.with_role("proxy"), inventory.with_role("app")
    vips = _vips(inventory)

    # Users reach NGINX over HTTPS: at the floating address(es), else at each proxy.
    for vip in vips:
        nodes[vip_id(vip)] = Node(vip_id(vip), f"floating address\n{vip}", "vips", "vip")
        flows.append(Flow("https", "users", vip_id(vip), 443))
        flows.append(Flow("vip", vip_id(vip), "layer:proxy", None, "(keepalived)"))
    if not vips:
        flows += [Flow("https", "users", p.name, 443) for p in proxies]
    if proxies and apps:
        flows.append(Flow("http", "layer:proxy", "layer:app", s.mattermost.port))
    if len(apps) > 1:
        flows.append(Flow("gossip", "layer:app", "layer:app", GOSSIP_PORT, "(cluster)"))

    # The database: its clients to the primary, the primary to each replica.
    dbs = inventory.with_role("db")
    engine = s.database.engine
    if dbs:
        port = DB_PORTS.get(engine, 5432)
        primary = _primary(dbs, live)
        # A job server on an app host is drawn in the app layer, whose flow covers it.
        for layer in [c for c in ("app", "jobserver") if _is_layer(inventory, c)]:
            flows.append(Flow("sql", f"layer:{layer}", primary.name if primary else "layer:db", port, engine))
        for replica in dbs:
            if primary is not None and replica.name != primary.name:
                flows.append(Flow("replication", primary.name, replica.name, port))

    # Layers behind the internal balancer (component.Balanced), else reached directly.
    balanced = {b.name: (b, hosts) for b, hosts in registry().balanced_layers(inventory)}
    for layer, (kind, default_port) in ROLE_FLOWS.items():
        hosts = inventory.with_role(layer)
        if not hosts:
            continue
        declared = next(
            ((b, hs) for name, (b, hs) in balanced.items() if {h.name for h in hs} & {h.name for h in hosts}), None
        )
        if declared and proxies:
            b, _ = declared
            bport = b.port_for(s)
            entry = vip_id(vips[0]) if vips else "layer:proxy"
            for client in b.clients:
                if _is_layer(inventory, client):
                    flows.append(
                        Flow(BALANCED_KINDS.get(b.name, kind), f"layer:{client}", entry, bport, "(internal balancer)")
                    )
            flows.append(Flow(BALANCED_KINDS.get(b.name, kind), "layer:proxy", f"layer:{layer}", bport))
        else:
            flows.append(Flow(kind, "layer:app", f"layer:{layer}", default_port))

    # Prometheus on the monitoring host scrapes every declared target: one flow per layer.
    monitors = inventory.with_role("monitoring")
    if monitors:
        per_layer: dict[str, list[str]] = {}
        for job, targets in registry().scrape_jobs(inventory):
            for h, m in targets:
                entry = f"{job}:{m.port_for(h)}"
                per_layer.setdefault(layer_of(h), [])
                if entry not in per_layer[layer_of(h)]:
                    per_layer[layer_of(h)].append(entry)
        for layer, jobs in per_layer.items():
            if layer == layer_of(monitors[0]) and sum(layer_of(h) == layer for h in inventory.hosts) == 1:
                continue  # it scrapes itself: no flow between hosts
            flows.append(Flow("metrics", monitors[0].name, f"layer:{layer}", None, ", ".join(jobs)))

    graph = Graph(f"{inventory.pattern} pattern: {inventory.path.name}", nodes, flows, live is not None)
    if live is not None:
        _annotate(graph, inventory, live)
    return graph


def firewall_view(inventory: Inventory) -> Graph:
    """The host firewall's flow matrix as a graph: one edge per (source, destination layer)
    and kind, labelled with every port it allows ("proto port name"). Sources are the
    matrix's own: anyone, the control machine, firewall.admin_cidrs and settings lists
    (such as database.extra_clients) where they hold networks, and the layers of the hosts
    it names."""
    from .components.firewall import setting_list
    from .registry import registry

    nodes = _host_nodes(inventory)
    allowed: dict[tuple[str, str, str], list[str]] = {}
    for flow in registry().flows(inventory):
        ends = {f"layer:{layer_of(h)}" for h in flow.sources}
        for reach in flow.reach:
            if reach in SOURCE_NODES and (reach != ADMIN or flow.host.settings.firewall.admin_cidrs):
                node_id, label = SOURCE_NODES[reach]
            elif reach.startswith("settings.") and setting_list(flow.host.settings, reach):
                node_id, label = "setting_" + reach[9:].replace(".", "_"), reach[9:]
            else:
                continue
            nodes.setdefault(node_id, Node(node_id, label, "clients", "clients"))
            ends.add(node_id)
        kind = "scrape" if flow.kind == "metrics" else "ssh" if flow.name == "ssh" else "allow"
        what = f"{flow.proto} {flow.port} {flow.name}" if flow.proto != "vrrp" else f"vrrp {flow.name}"
        for src in sorted(ends):
            entries = allowed.setdefault((kind, src, f"layer:{layer_of(flow.host)}"), [])
            if what not in entries:
                entries.append(what)
    flows = [
        Flow(kind, src, dst, None, "\n".join(sorted(what, key=_port_order)))
        for (kind, src, dst), what in allowed.items()
    ]
    enforced = all(h.settings.firewall.enabled for h in inventory.hosts)
    title = f"{inventory.pattern} pattern: {inventory.path.name}, host firewall: inbound flows allowed, " + (
        "everything else dropped" if enforced else "NOT ENFORCED (firewall.enabled: false)"
    )
    return Graph(title, nodes, flows)


def _port_order(entry: str) -> tuple[int, str]:
    parts = entry.split()
    return (int(parts[1]) if parts[1].isdigit() else 0, entry)


def _primary(dbs: list[Host], live: LiveState | None) -> Host | None:
    """The live primary when known, else the first DB host (where a fresh deploy puts it)."""
    if live is not None and live.db:
        from .dbtier import decide

        try:
            states = {h.name: live.db[h.name] for h in dbs if h.name in live.db}
            if len(states) == len(dbs):
                topo = decide(dbs, states)
                return topo.primary
        except MMDeployError:
            return None
    return dbs[0]


def _annotate(graph: Graph, inventory: Inventory, live: LiveState) -> None:
    for h in inventory.hosts:
        node = graph.nodes[h.name]
        node.state = "down" if h.name in live.down else "up"
        if h.name in live.down:
            node.notes.append("DOWN")
        state = live.db.get(h.name)
        if state is not None and h.name not in live.down:
            if state.fenced:
                node.notes.append("FENCED")
            elif state.role == "primary":
                node.notes.append("primary, writable" if state.writable else "primary, not writable")
            elif state.role == "replica":
                node.notes.append("replica, streaming" if state.streaming else "replica, NOT streaming")
            elif not state.running:
                node.notes.append("database down")
    for vip, holder in live.vip_holders.items():
        vip_node = graph.nodes.get(vip_id(vip))
        if vip_node is not None:
            vip_node.notes.append(f"held by {holder}" if holder else "held by no host")
            vip_node.state = "up" if holder else "down"
    if live.vip_holders:  # the floating address points at its holder only
        graph.flows = [f for f in graph.flows if f.kind != "vip"] + [
            Flow("vip", vip_id(vip), holder, None, "(holder)") for vip, holder in live.vip_holders.items() if holder
        ]


# --- live state ----------------------------------------------------------------------------

ADDRESSES = "ip -o addr show | awk '{print $4}'"
CONNECT_TIMEOUT = 2.0


def read_live(inventory: Inventory, redact: Any = None) -> LiveState:
    """What the hosts say right now, read-only over SSH (each with a short connect timeout
    and the facts' time limit): the addresses each holds (so, which host holds each
    floating address) and, through the DB tier, each DB node's role. A host that does not
    answer is marked down."""
    from . import dbtier
    from .facts import FactCache
    from .remote import Remote

    if redact is None:
        from .api import session

        redact = session(inventory)[0]
    live = LiveState()
    addresses: dict[str, set[str]] = {}

    def read(h: Host) -> None:
        quick = dataclasses.replace(
            h, ssh=dataclasses.replace(h.ssh, connect_timeout=min(h.ssh.connect_timeout, CONNECT_TIMEOUT))
        )
        remote = Remote(quick, redact)
        try:
            fact = FactCache(remote).get([ADDRESSES])[ADDRESSES]
            addresses[h.name] = {a.split("/")[0] for a in fact.out.split()}
        except MMDeployError as e:
            live.down[h.name] = str(e)
        finally:
            remote.close()

    with ThreadPoolExecutor(max_workers=min(16, len(inventory.hosts))) as pool:
        list(pool.map(read, inventory.hosts))
    for vip in _vips(inventory):
        live.vip_holders[vip] = next((name for name, held in addresses.items() if vip in held), None)
    if inventory.with_role("db"):
        try:
            live.db = {s.host.name: s for s in dbtier.status(inventory, redactor=redact)}
        except MMDeployError:
            live.db = {}
    return live


# --- drawing -----------------------------------------------------------------------------


def to_dot(graph: Graph) -> graphviz.Digraph:
    """The Graphviz graph: a cluster per layer, an edge per flow (an edge from or to a
    whole layer is drawn to its cluster's border)."""
    import graphviz

    dot = graphviz.Digraph(
        "mmdeploy",
        graph_attr={
            "label": graph.title + ("  (live state)" if graph.live else "  (from the inventory)"),
            "labelloc": "t",
            "fontname": "Helvetica",
            "fontsize": "16",
            "rankdir": "TB",
            "compound": "true",
            "newrank": "true",
            "nodesep": "0.5",
            "ranksep": "0.8",
        },
        node_attr={
            "shape": "box",
            "style": "rounded,filled",
            "fillcolor": "white",
            "fontname": "Helvetica",
            "fontsize": "11",
        },
        edge_attr={"fontname": "Helvetica", "fontsize": "9"},
    )
    order = ["clients", "vips", *LAYERS]
    layers = sorted({n.layer for n in graph.nodes.values()}, key=lambda x: order.index(x) if x in order else 99)
    for layer in layers:
        members = graph.layer(layer)
        if layer in ("clients", "vips"):
            for n in members:
                _node(dot, n)
            continue
        with dot.subgraph(name=f"cluster_{layer}") as sub:
            # A layer's hosts side by side (newrank lets rank=same work inside a cluster).
            sub.attr(
                label=LAYER_LABELS.get(layer, layer), style="rounded,dashed", color="gray50", fontsize="12", rank="same"
            )
            for n in members:
                _node(sub, n)
    for f in graph.flows:
        attrs = {"label": f.label, "color": COLORS.get(f.kind, "black"), "fontcolor": COLORS.get(f.kind, "black")}
        if f.kind in ("metrics", "vip", "scrape"):
            attrs["style"] = "dotted"
        if f.kind == "replication":
            attrs["style"] = "bold"
        if f.kind in ("metrics", "scrape"):
            attrs["constraint"] = "false"  # monitoring sits at the bottom without pulling layers down
        src, dst = _end(graph, f.src), _end(graph, f.dst)
        if f.src.startswith("layer:") and f.src != f.dst:
            attrs["ltail"] = f"cluster_{f.src[6:]}"
        if f.dst.startswith("layer:") and f.src != f.dst:
            attrs["lhead"] = f"cluster_{f.dst[6:]}"
        if f.src == f.dst:  # within a layer (gossip): between its first and last host, both ways
            members = graph.layer(f.src[6:])
            src, dst = members[0].id, members[-1].id
            attrs["dir"] = "both"
            attrs["constraint"] = "false"
        dot.edge(src, dst, **attrs)
    return dot


def _node(dot: Any, n: Node) -> None:
    label = n.label + "".join(f"\n[{note}]" for note in n.notes)
    attrs = {"label": label}
    if n.kind == "clients":
        attrs.update(shape="ellipse", fillcolor="aliceblue")
    elif n.kind == "vip":
        attrs.update(shape="octagon", fillcolor="mistyrose")
    if n.state == "down":
        attrs.update(fillcolor="#f4cccc", style="rounded,filled,dashed", color="red3")
    elif any(note.startswith("primary") for note in n.notes):
        attrs.update(fillcolor="#d9ead3", penwidth="2")
    dot.node(n.id, **attrs)


def _end(graph: Graph, end: str) -> str:
    if end.startswith("layer:"):
        members = graph.layer(end[6:])
        if not members:
            raise MMDeployError(f"topology: flow to the empty layer {end[6:]}")
        return members[0].id
    return end


def render(graph: Graph, path: Path) -> Path:
    """Draw the graph to `path` (its suffix is the format: .svg, .png, .pdf, .dot)."""
    dot = to_dot(graph)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".") or "svg"
    if fmt in ("dot", "gv"):
        path.write_text(dot.source)
        return path
    try:
        data = dot.pipe(format=fmt)
    except Exception as e:  # graphviz.ExecutableNotFound, or dot refusing the format
        raise MMDeployError(
            f"topology: drawing {path.name} needs Graphviz's `dot` (Debian: apt-get install graphviz): {e}"
        ) from None
    path.write_bytes(data)
    return path
