"""The report's Docker + Kubernetes pattern (section 6.4): Mattermost run by Mattermost's
Kubernetes operator (github.com/mattermost/mattermost-operator, Apache-2.0), its database,
S3 storage and search outside the cluster, NGINX as the ingress controller.

`manifests(inventory, secrets)` renders, from the same inventory settings the SSH
deploy uses, the documents `kubectl apply -k DIR` takes:
- a Namespace;
- the Mattermost custom resource (installation.mattermost.com/v1beta1): version and
  image from `mattermost`, replicas and per-pod resources from the app hosts and
  `inv size`'s figures for `expected_users`, the license secret, the external database
  (the DB tier's primary and replicas), external S3 storage and search, an ingress for
  the NGINX ingress class with TLS;
- the Secrets it references: the database connection strings, the S3 keys, the license,
  and the TLS certificate;
- a kustomization.yaml listing them.
Secret values are written only into secrets.yaml (mode 0600, never printed). What the
inventory does not know (a certificate when TLS is self-signed on the hosts, S3 keys when
no storage component declares them) is a visible placeholder, listed in `Manifests.placeholders`.

Nothing here talks to a cluster: no Kubernetes runs on the machines this is built on;
the custom resource is checked against the operator's own CRD schema in the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .inventory import Host, Inventory
from .secrets import Secret, Secrets

NAMESPACE = "mattermost"
NAME = "mattermost"
CR_API = "installation.mattermost.com/v1beta1"
DB_SECRET, S3_SECRET = "mattermost-db", "mattermost-s3"
LICENSE_SECRET, TLS_SECRET = "mattermost-license", "mattermost-tls"
IMAGES = {"enterprise": "mattermost/mattermost-enterprise-edition", "team": "mattermost/mattermost-team-edition"}
S3_BUCKET = "mattermost"
SEARCH_PORT, S3_PORT = 9200, 8333  # the services' default ports, when no balanced layer says otherwise


def placeholder(what: str) -> str:
    return f"<fill in: {what}>"


@dataclass
class Manifests:
    documents: dict[str, list[dict[str, Any]]]  # file name -> its documents
    placeholders: list[str] = field(default_factory=list)  # what the operator must fill in

    @property
    def custom_resource(self) -> dict[str, Any]:
        return next(d for d in self.documents["mattermost.yaml"] if d["kind"] == "Mattermost")

    def write(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, docs in self.documents.items():
            path = directory / name
            text = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
            if name == "secrets.yaml":  # secret values: readable by the owner only, from creation on
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                path.chmod(0o600)
            else:
                path.write_text(text)
            written.append(path)
        return written


def _endpoint(inventory: Inventory, layer: str, role: str, default_port: int) -> str | None:
    """host:port of a layer outside the cluster: its balanced endpoint when a component
    declares one, else its first host on the service's default port."""
    from . import balancer

    found = balancer.endpoint(inventory, layer)
    if found:
        return f"{found[0]}:{found[1]}"
    hosts = inventory.with_role(role)
    return f"{hosts[0].private_address}:{default_port}" if hosts else None


def _secret(name: str, values: dict[str, str], kind: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": kind,
        "stringData": values,
    }


def manifests(inventory: Inventory, secrets: Secrets) -> Manifests:
    from . import sizing
    from .components.mattermost import datasource
    from .dbtier import engine_for
    from .dbtier.component import DB_PASSWORD

    s = inventory.settings
    mm = s.mattermost
    todo: list[str] = []
    documents: dict[str, list[dict[str, Any]]] = {
        "namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    }
    secret_docs: list[dict[str, Any]] = []

    # The database outside the cluster: its primary and replicas (on a fresh site the
    # first DB host is the primary, as deploy makes it; re-render after a failover).
    dbs = inventory.with_role("db")
    password = secrets.get(DB_PASSWORD)
    db_values: dict[str, str] = {}
    if dbs:

        def dsn(address: str) -> str:
            text = datasource(s, address, password)
            return text if text.startswith("postgres") else "mysql://" + text  # the operator reads the scheme

        engine = engine_for(s.database)
        routes = getattr(engine, "routes", None)
        if routes is not None:  # Patroni: HAProxy's routes follow the leader
            primary, replicas = routes(inventory)
        else:
            primary, replicas = _at(dbs[0], engine.port), [_at(h, engine.port) for h in dbs[1:]]
        db_values["DB_CONNECTION_STRING"] = dsn(primary)
        if replicas:
            db_values["MM_SQLSETTINGS_DATASOURCEREPLICAS"] = ",".join(dsn(a) for a in replicas)
    else:
        db_values["DB_CONNECTION_STRING"] = placeholder("the database connection string")
        todo.append(f"secrets.yaml: {DB_SECRET}: DB_CONNECTION_STRING (no host has the db role)")
    secret_docs.append(_secret(DB_SECRET, db_values))

    spec: dict[str, Any] = {
        "image": IMAGES[mm.edition],
        "version": mm.version,
        "replicas": max(1, len(inventory.with_role("app"))),
        "database": {"external": {"secret": DB_SECRET}},
        "ingress": {
            "enabled": True,
            "host": s.domain,
            "ingressClass": "nginx",
            "tlsSecret": TLS_SECRET,
            "annotations": {
                # Mattermost's NGINX guidance, as the nginx component writes it for the hosts.
                "nginx.ingress.kubernetes.io/proxy-body-size": s.nginx.client_max_body_size,
                "nginx.ingress.kubernetes.io/proxy-buffering": "on",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "600",
                "nginx.ingress.kubernetes.io/ssl-redirect": "true",
            },
        },
        "mattermostEnv": [{"name": "MM_SERVICESETTINGS_SITEURL", "value": f"https://{s.domain}"}],
    }
    # Per pod: the application server's size for the expected users (inv size's figures).
    app = sizing.recommend(s.expected_users).role("app")
    spec["scheduling"] = {
        "resources": {
            "requests": {"cpu": str(max(1, app.cpus // 2)), "memory": f"{max(1, app.memory_gib // 2)}Gi"},
            "limits": {"cpu": str(app.cpus), "memory": f"{app.memory_gib}Gi"},
        }
    }

    s3 = _endpoint(inventory, "storage", "storage", S3_PORT)
    if s3:
        keys = {}
        # The storage component's credentials of Mattermost's bucket (components/storage).
        for key, name in (("accesskey", "storage_access_key"), ("secretkey", "storage_secret_key")):
            declared = _declared(secrets, name)
            if declared is not None:
                keys[key] = secrets.get(declared)
            else:
                keys[key] = placeholder(f"the S3 {key} of the storage layer")
                todo.append(f"secrets.yaml: {S3_SECRET}: {key}")
        secret_docs.append(_secret(S3_SECRET, keys))
        storage = getattr(s, "storage", None)
        bucket, region = getattr(storage, "bucket", S3_BUCKET), getattr(storage, "region", "us-east-1")
        spec["fileStore"] = {"external": {"url": s3, "bucket": bucket, "secret": S3_SECRET}}
        spec["mattermostEnv"] += [
            {"name": "MM_FILESETTINGS_AMAZONS3SSL", "value": "false"},
            {"name": "MM_FILESETTINGS_AMAZONS3REGION", "value": region},
        ]
    search = _endpoint(inventory, "search", "search", SEARCH_PORT)
    if search:
        spec["elasticSearch"] = {"host": f"http://{search}"}
        spec["mattermostEnv"] += [{"name": "MM_ELASTICSEARCHSETTINGS_BACKEND", "value": "opensearch"}]

    if mm.license_file:
        license_path = (inventory.path.parent / mm.license_file).expanduser()
        text = license_path.read_text().strip() if license_path.is_file() else placeholder("the license file's text")
        if not license_path.is_file():
            todo.append(f"secrets.yaml: {LICENSE_SECRET}: license ({license_path} not found)")
        secret_docs.append(_secret(LICENSE_SECRET, {"license": text}))
        spec["licenseSecret"] = LICENSE_SECRET

    tls = s.tls
    if tls.mode == "provided" and tls.cert and tls.key:
        cert, key = (inventory.path.parent / tls.cert).expanduser(), (inventory.path.parent / tls.key).expanduser()
        tls_values = {
            "tls.crt": cert.read_text() if cert.is_file() else placeholder(f"the certificate {cert}"),
            "tls.key": key.read_text() if key.is_file() else placeholder(f"the key {key}"),
        }
    else:
        tls_values = {
            "tls.crt": placeholder("the site's certificate chain (PEM)"),
            "tls.key": placeholder("its private key (PEM)"),
        }
        todo.append(
            f"secrets.yaml: {TLS_SECRET}: tls.crt and tls.key (tls.mode is {tls.mode}: "
            "use a certificate for the ingress, or cert-manager)"
        )
    secret_docs.append(_secret(TLS_SECRET, tls_values, "kubernetes.io/tls"))

    documents["secrets.yaml"] = secret_docs
    documents["mattermost.yaml"] = [
        {"apiVersion": CR_API, "kind": "Mattermost", "metadata": {"name": NAME, "namespace": NAMESPACE}, "spec": spec}
    ]
    documents["kustomization.yaml"] = [
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["namespace.yaml", "secrets.yaml", "mattermost.yaml"],
        }
    ]
    return Manifests(documents, todo)


def _declared(secrets: Secrets, name: str) -> Secret | None:
    return secrets.declared.get(name)


def _at(host: Host, port: int) -> str:
    address = host.private_address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
