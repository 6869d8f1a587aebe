"""Prometheus exporters from Debian's packages: node_exporter on every host, the postgres or
mysqld exporter on database hosts (by `database.engine`), the nginx exporter on proxy hosts
(reading the stub_status page components/nginx.py serves on the loopback interface).

The database exporters log in as `monitoring.db_user` with the secret
`db_monitoring_password`, over the loopback interface. The database components create
that user, with the least the exporter needs:
- PostgreSQL: `CREATE ROLE <user> LOGIN PASSWORD '<secret>'; GRANT pg_monitor TO <user>;`
  and a pg_hba line `host postgres <user> 127.0.0.1/32 scram-sha-256`.
- MySQL/MariaDB: `CREATE USER '<user>'@'localhost' IDENTIFIED BY '<secret>';
  GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO '<user>'@'localhost';`
  (the exporter connects through the socket /run/mysqld/mysqld.sock).
The credentials live only in the exporter's environment file (0640, prometheus:prometheus,
as the package itself sets it), never on a command line.
"""

from __future__ import annotations

from urllib.parse import quote

from ..component import Component, Context
from ..ops import Command, File, Group, Packages, Service, User
from ..ops.secretfile import SecretFile


class Exporters(Component):
    name = "exporters"
    after = ("base", "nginx")  # the nginx exporter needs stub_status live when it starts

    def hosts(self, inventory):
        return list(inventory.hosts)

    def steps(self, ctx: Context):
        host, s = ctx.host, ctx.settings
        steps = [Packages("prometheus-node-exporter"), Service("prometheus-node-exporter")]
        if host.has("db") or host.has("proxy"):
            # The packages' own user, made first so that an exporter's settings can be in
            # place before its package starts it (it would otherwise start without them,
            # fail, and hit systemd's start limit).
            steps += [Group("prometheus"), User("prometheus", home="/var/lib/prometheus")]
        if host.has("db"):
            password = ctx.secrets.get("db_monitoring_password")
            if s.database.engine == "postgresql":
                dsn = (f"postgresql://{quote(s.monitoring.db_user)}:{quote(password, safe='')}"
                       "@127.0.0.1:5432/postgres?sslmode=disable")
                steps += _exporter("prometheus-postgres-exporter", _env(DATA_SOURCE_NAME=dsn, ARGS=""))
            else:
                dsn = f"{s.monitoring.db_user}:{password}@unix(/run/mysqld/mysqld.sock)/"
                steps += _exporter("prometheus-mysqld-exporter", _env(DATA_SOURCE_NAME=dsn, ARGS=""))
        if host.has("proxy"):
            # Retries: after a reboot the exporter may start before nginx answers.
            args = (f"-nginx.scrape-uri=http://127.0.0.1:{s.nginx.status_port}/stub_status "
                    "-nginx.retries=10")
            steps += _exporter("prometheus-nginx-exporter", _env(ARGS=args), secret=False)
        return steps

    def handlers(self, ctx: Context):
        return {f"restart {u}": Command(f"restart {u}", f"systemctl restart {u}") for u in (
            "prometheus-postgres-exporter", "prometheus-mysqld-exporter", "prometheus-nginx-exporter")}


def _exporter(unit: str, env: str, secret: bool = True):
    path, notify = f"/etc/default/{unit}", (f"restart {unit}",)
    if secret:  # owner and mode as the Debian package sets them on every configure
        settings = SecretFile(path, env, owner="prometheus", group="prometheus", mode="0640", notify=notify)
    else:
        settings = File(path, env, notify=notify)
    return [settings, Packages(unit), Service(unit)]


def _env(**values: str) -> str:
    """A systemd EnvironmentFile: double-quoted values with \\ and \" escaped."""
    lines = ["# Managed by mmdeploy (components/exporters.py)."]
    for key, value in values.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"
