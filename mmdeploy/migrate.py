"""`inv db.migrate --to postgresql`: a MySQL-family tier moved to PostgreSQL along
Mattermost's documented path ("Manually migrate from MySQL to PostgreSQL"), then every app
and job server cut over, the old tier left read-only for a rollback.

The inventory names the target: database.engine postgresql (the DB components are per
engine, so a deploy of it installs PostgreSQL); the source is the MySQL-family tier still
running on the same db hosts (PostgreSQL on 5432 beside MariaDB on 3306), read through the
same inventory with engine mysql. Steps:

 1. checks (the dry run, also the first part of a real run): the nodes run the version the
    inventory names (10.x: MySQL runs nothing newer); the PostgreSQL tier deployed (the
    postgresql components only, beside the running site); the target schema created by
    that same Mattermost release (`mattermost db migrate` against the empty database,
    as the guide has morph do with the release's migrations); the guide's checks on the
    source (values longer than the PostgreSQL schema's VARCHAR limits, JSON holding
    \\u0000, columns one side lacks); `pgloader --dry-run` (connections and the load file).
 2. the migration window: Mattermost stopped on every node; the MySQL primary read-only;
    the full-text indexes dropped; pgloader (data only, the guide's casting rules,
    truncating each target table first); the indexes made again.
 3. the comparison, per table: row counts and an order-independent checksum of every row
    with values normalized per column type (booleans, JSON), computed on each DB host.
    Any difference stops here: Mattermost goes back to MySQL, made writable again.
 4. the cut-over: the mattermost component re-applied on every app and job server with
    the PostgreSQL DataSource, then verify.

MariaDB: Mattermost's migration tooling supports MySQL, not MariaDB, and Mattermost does
not support migrating from MariaDB to PostgreSQL directly. pgloader speaks MariaDB's wire
protocol and the same load works; the comparison is what vouches for the result. See the
README.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from .errors import InventoryError, MMDeployError
from .fleet import Fleet
from .inventory import Host, Inventory
from .step import run_checked

Out = Callable[[str], None]
LOAD_TIMEOUT = 12 * 3600

# Run on a DB host with python3: reads a table's rows (MySQL's batch format or
# PostgreSQL's COPY text format) on standard input and prints the row count and the sum,
# modulo 2^256, of each row's SHA-256 over its values normalized per column type, so the
# same rows give the same checksum on both engines in any order.
TABLESUM = r"""
import hashlib, json, sys
fmt, types = sys.argv[1], sys.argv[2].split(",")
table = {"0": "\0", "t": "\t", "n": "\n", "\\": "\\"} if fmt == "mysql" else \
        {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
null = "NULL" if fmt == "mysql" else "\\N"
def unescape(v):
    if "\\" not in v:
        return v
    out, i = [], 0
    while i < len(v):
        if v[i] == "\\" and i + 1 < len(v):
            out.append(table.get(v[i + 1], v[i + 1])); i += 2
        else:
            out.append(v[i]); i += 1
    return "".join(out)
def norm(v, t):
    if v == null:
        return None
    v = unescape(v).replace("\0", "")  # pgloader's remove-null-characters
    if t == "b":
        return v in ("1", "t", "true")
    if t == "j":
        try:
            return json.dumps(json.loads(v), sort_keys=True, separators=(",", ":"))
        except ValueError:
            return v
    if t == "f":
        try:
            return repr(float(v))
        except ValueError:
            return v
    return v
total = count = 0
for raw in sys.stdin.buffer:
    fields = raw.decode("utf-8", "surrogateescape").rstrip("\n").split("\t")
    row = [norm(v, t) for v, t in zip(fields, types)]
    digest = hashlib.sha256(json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogateescape")).digest()
    total = (total + int.from_bytes(digest, "big")) % (1 << 256)
    count += 1
print(count, format(total, "064x"))
"""


@dataclass
class TableCheck:
    table: str
    source_rows: int | None
    target_rows: int | None
    source_sum: str | None = None
    target_sum: str | None = None

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sum == self.target_sum


@dataclass
class MigrationReport:
    ok: bool
    dry_run: bool
    source: str  # the MySQL-family primary
    target: str  # the PostgreSQL primary
    version: str
    problems: list[str] = field(default_factory=list)  # what stops the migration
    warnings: list[str] = field(default_factory=list)
    tables: list[TableCheck] = field(default_factory=list)
    rows: int = 0
    load_seconds: float = 0.0
    downtime_seconds: float = 0.0
    seconds: float = 0.0
    cut_over: bool = False
    checks_failed: list[str] = field(default_factory=list)
    message: str = ""
    timeline: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tables"] = [{**asdict(t), "ok": t.ok} for t in self.tables]
        return d


def with_engine(inventory: Inventory, engine: str) -> Inventory:
    """The same inventory with database.engine set (the source view of a migration)."""

    def swap(settings):
        return settings.model_copy(update={"database": settings.database.model_copy(update={"engine": engine})})

    hosts = tuple(dataclasses.replace(h, settings=swap(h.settings)) for h in inventory.hosts)
    return dataclasses.replace(inventory, hosts=hosts, settings=swap(inventory.settings))


def migrate(
    inventory: Inventory, to: str = "postgresql", dry_run: bool = False, out: Out | None = None
) -> MigrationReport:
    from . import dbtier
    from .components.mattermost import DB_PASSWORD
    from .components.mysql import migrate as my
    from .components.mysql.component import flavor_of
    from .components.postgresql import migrate as pg
    from .upgrades import mattermost_nodes, read_node

    if to != "postgresql":
        raise InventoryError([f"--to: only postgresql is a migration target, got {to!r}"])
    if inventory.settings.database.engine != "postgresql":
        raise InventoryError(["database.engine: the inventory must name the target (postgresql) for db.migrate"])
    mm = inventory.settings.mattermost
    if mm.config_in_database:
        raise InventoryError(
            [
                "mattermost.config_in_database: Mattermost's guide moves a database config with "
                "`mmctl config migrate` separately; switch to a config file first (deploy with "
                "config_in_database false), migrate, then switch back"
            ]
        )
    source_inv = with_engine(inventory, "mysql")
    src_states = [s for s in dbtier.status(source_inv) if s.writable]
    if len(src_states) != 1:
        raise MMDeployError(
            "the MySQL-family tier has no single writable primary to migrate from (inv db.status "
            "with database.engine mysql)"
        )
    source = src_states[0].host
    flavor = flavor_of(source)
    nodes = mattermost_nodes(inventory)
    report = MigrationReport(False, dry_run, source.name, "", mm.version)
    with Fleet(inventory, "db-migrate", out) as fleet:
        try:
            _migrate(fleet, inventory, source_inv, source, flavor, nodes, report, my, pg, DB_PASSWORD, read_node)
        finally:
            report.seconds = fleet.elapsed()
            report.timeline = list(fleet.lines)
    return report


def _migrate(fleet, inventory, source_inv, source, flavor, nodes, report, my, pg, DB_PASSWORD, read_node) -> None:
    from . import dbtier
    from .components.mattermost import CONFIG, HOME, STOP_GRACE, datasource, unit_name
    from .ops import Packages

    mm = inventory.settings.mattermost
    versions = {s.host.name: s.version for s in fleet.parallel(lambda h: read_node(fleet, h), nodes)}
    other = {n: v for n, v in versions.items() if v != mm.version}
    if other:
        raise MMDeployError(
            f"the nodes must run mattermost.version {mm.version} (the target schema is made by the "
            f"same release): {', '.join(f'{n} runs {v}' for n, v in other.items())}"
        )
    fleet.say(f"source: {flavor.name} primary {source.name}; Mattermost {mm.version} on {', '.join(versions)}")
    # 1. the PostgreSQL tier, beside the running site.
    _deploy_components(
        fleet, inventory, ["postgresql", "postgresql-replication"], [h.name for h in inventory.with_role("db")]
    )
    target = dbtier.status(inventory)
    writable = [s.host for s in target if s.writable]
    if len(writable) != 1:
        raise MMDeployError("the PostgreSQL tier has no single writable primary after its deploy (inv db.status)")
    pg_primary = writable[0]
    report.target = pg_primary.name
    fleet.say(f"PostgreSQL tier deployed; primary {pg_primary.name}")
    _apply_op(fleet, pg_primary, Packages("pgloader"))
    password = fleet.secrets.get(DB_PASSWORD)
    # The schema, made by the same Mattermost release, against the empty database.
    app = inventory.with_role("app")[0]
    address = pg_primary.private_address
    dsn = datasource(inventory.settings, f"[{address}]:5432" if ":" in address else f"{address}:5432", password)
    schema = run_checked(
        fleet.remote(app),
        f"""\
set -e
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export MMDEPLOY_DSN={_sq(dsn)}
jq '.SqlSettings.DriverName = "postgres" | .SqlSettings.DataSource = env.MMDEPLOY_DSN | .SqlSettings.DataSourceReplicas = []
    | .ClusterSettings.Enable = false' {CONFIG} > "$tmp/config.json"
chown -R mattermost:mattermost "$tmp"; chmod 0600 "$tmp/config.json"
cd {HOME} && runuser -u mattermost -- {HOME}/bin/mattermost db migrate --config "$tmp/config.json" | tail -n 3
""",
        f"create the PostgreSQL schema with Mattermost {mm.version} on {app.name}",
        timeout=900,
    )
    fleet.say(f"schema created by Mattermost {mm.version} on {app.name}: {schema.stdout.strip().splitlines()[-1:]}")
    # The guide's checks on the source, and the two schemas side by side.
    src_cols = _columns(
        run_checked(fleet.remote(source), my.query(my.columns_sql()), "read the MySQL schema", timeout=120).stdout, 3
    )
    dst_cols = _columns(
        run_checked(
            fleet.remote(pg_primary), pg.psql(pg.columns_sql()), "read the PostgreSQL schema", timeout=120
        ).stdout,
        4,
    )
    tables = _plan_tables(src_cols, dst_cols, report, my)
    present = {(t.lower(), c.lower()) for t, cols in src_cols.items() for c, *_ in cols}
    for line in run_checked(
        fleet.remote(source), my.query(my.too_long_sql(present)), "check VARCHAR limits", timeout=1800
    ).stdout.splitlines():
        what, count = line.rsplit("\t", 1)
        if what != "none" and int(count):
            report.problems.append(
                f"{count} row(s) with {what} characters: longer than the PostgreSQL schema allows "
                "(Mattermost's guide: delete or shorten them first)"
            )
    json_cols = [(t, c) for t, cols in src_cols.items() for c, typ, *_ in cols if typ == "json" and not my.excluded(t)]
    for line in run_checked(
        fleet.remote(source), my.query(my.null_escape_sql(json_cols)), "check JSON for \\u0000", timeout=1800
    ).stdout.splitlines():
        what, count = line.rsplit("\t", 1)
        if what != "none" and int(count):
            report.problems.append(
                f"{count} row(s) of {what} hold the JSON escape \\u0000, which PostgreSQL refuses "
                "(Mattermost's guide: its SanitizeUnsupportedUnicode procedure)"
            )
    # pgloader reads with a SELECT-only account for the PostgreSQL primary's address.
    run_checked(
        fleet.remote(source),
        f"mysql --protocol=socket <<'SQL'\n{my.grant_reader(pg_primary.private_address, password)}SQL\n",
        f"pgloader's read account on {source.name}",
        timeout=60,
    )
    enums = [
        (t, c, udt)
        for t, c, udt in pg.ENUM_COLUMNS
        if any(name == c.lower() and typ == "USER-DEFINED" for name, typ, *_ in dst_cols.get(t.lower(), []))
    ]
    load = pg.load_file(source.private_address, password, enums, my.EXCLUDED, my.EXCLUDED_PREFIXES)
    r = fleet.remote(pg_primary)
    try:
        run_checked(
            r, pg.write_load_file(load), "write the load file", log_as="# write the pgloader load file", timeout=60
        )
        dry = r.run(pg.pgloader(dry_run=True), timeout=600, what="pgloader --dry-run")
        if not dry.ok:
            report.problems.append("pgloader --dry-run failed: " + " | ".join(dry.stdout.strip().splitlines()[-6:]))
        else:
            fleet.say("pgloader --dry-run: connections and the load file are good")
        counts = run_checked(
            fleet.remote(source),
            my.query(my.row_counts_sql([t for t, _ in tables])),
            "count the source rows",
            timeout=1800,
        ).stdout
        rows = sum(int(line.rsplit("\t", 1)[1]) for line in counts.splitlines() if "\t" in line)
        report.rows = rows
        fleet.say(f"{len(tables)} tables, {rows} rows to move; problems: {len(report.problems)}")
        if report.problems or report.dry_run:
            report.ok = not report.problems
            report.message = (
                "dry run: ready to migrate"
                if report.ok
                else f"not migrated: {len(report.problems)} problem(s) to fix first"
            )
            fleet.say(report.message)
            return
        # 2. the migration window.
        down = time.monotonic()

        def stop(h: Host) -> None:
            run_checked(
                fleet.remote(h),
                f"timeout {STOP_GRACE} systemctl stop {unit_name(h)} || systemctl kill -s KILL {unit_name(h)}",
                f"stop Mattermost on {h.name}",
                timeout=STOP_GRACE + 30,
            )

        fleet.parallel(stop, nodes)
        run_checked(fleet.remote(source), my.read_only_script(flavor), f"{source.name} read-only", timeout=60)
        fleet.say(f"Mattermost stopped on {', '.join(h.name for h in nodes)}; {source.name} is read-only")
        defs = [
            line
            for line in run_checked(
                r, pg.psql(pg.index_definitions_sql()), "read the full-text indexes", timeout=60
            ).stdout.splitlines()
            if line.strip()
        ]
        run_checked(r, pg.psql(pg.drop_indexes_sql()), "drop the full-text indexes", timeout=600)
        t0 = time.monotonic()
        result = run_checked(r, pg.pgloader(dry_run=False), "pgloader", timeout=LOAD_TIMEOUT)
        report.load_seconds = round(time.monotonic() - t0, 2)
        fleet.say(
            f"pgloader done in {report.load_seconds:.1f} s: "
            + " ".join(result.stdout.strip().splitlines()[-1:]).strip()
        )
        run_checked(r, pg.psql(pg.after_load_sql()), "the database's search_path", timeout=60)
        if defs:
            run_checked(r, pg.psql(pg.recreate_sql(defs)), "the full-text indexes again", timeout=LOAD_TIMEOUT)
    finally:
        r.run(pg.remove_load_file(), timeout=30)
    # 3. the comparison.
    report.tables = _compare(fleet, source, pg_primary, tables, dst_cols, my, pg)
    bad = [t for t in report.tables if not t.ok]
    fleet.say(
        f"compared {len(report.tables)} tables: "
        + (
            "every count and checksum matches"
            if not bad
            else f"{len(bad)} differ: " + ", ".join(f"{t.table} ({t.source_rows} vs {t.target_rows} rows)" for t in bad)
        )
    )
    if bad:
        _back_to_mysql(fleet, source_inv, source, nodes, report)
        report.downtime_seconds = round(time.monotonic() - down, 2)
        report.problems.append(f"{len(bad)} table(s) differ after the load: " + ", ".join(t.table for t in bad))
        report.message = "not cut over: the copy differs; Mattermost runs on MySQL again"
        fleet.say(report.message)
        return
    # 4. the cut-over.
    _deploy_components(fleet, inventory, ["mattermost"], [h.name for h in nodes])
    report.cut_over = True
    report.downtime_seconds = round(time.monotonic() - down, 2)
    fleet.say(
        f"every app and job server on PostgreSQL ({pg_primary.name}); "
        f"{report.downtime_seconds:.1f} s without Mattermost"
    )
    checks = fleet.verify(inventory)
    report.checks_failed = [f"{c.name}: {c.problem}" for c in checks if not c.ok]
    report.ok = not report.checks_failed
    report.message = (
        f"migrated {report.rows} rows to PostgreSQL ({pg_primary.name}); {source.name} ({flavor.name}) "
        f"is kept read-only for a rollback. Set database.engine: postgresql in the inventory file"
    )
    fleet.say(report.message)


def _sq(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _columns(text: str, width: int) -> dict[str, list[tuple]]:
    """table -> [(column in lower case, type, ...)] from tab-separated information_schema
    rows (PostgreSQL's names are lower case already; MySQL's keep their spelling)."""
    out: dict[str, list[tuple]] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= width:
            table, column, *rest = parts
            out.setdefault(table, []).append((column.lower(), *rest))
    return out


def _plan_tables(src: dict, dst: dict, report: MigrationReport, my) -> list[tuple[str, list[str]]]:
    """(MySQL table name, its columns) to load and compare; the schema differences the
    guide warns about become problems (a column PostgreSQL lacks) or warnings."""
    tables = []
    for table, cols in sorted(src.items()):
        if my.excluded(table):
            continue
        target = dst.get(table.lower())
        if target is None:
            report.warnings.append(
                f"table {table} has no PostgreSQL counterpart in Mattermost {report.version}'s "
                "schema: not migrated (a leftover of an older release or a plugin?)"
            )
            continue
        names = [c for c, *_ in cols]
        missing = [c for c in names if c not in {t for t, *_ in target}]
        if missing:
            report.problems.append(
                f"{table}: column(s) {', '.join(missing)} are not in the PostgreSQL schema "
                "(Mattermost's guide lists such leftovers and the DDL that drops them)"
            )
        extra = [t for t, *_ in target if t not in names]
        if extra:
            report.warnings.append(f"{table}: PostgreSQL column(s) {', '.join(extra)} get their defaults")
        tables.append((table, [c for c in names if c not in missing]))
    return tables


def _compare(fleet: Fleet, source: Host, target: Host, tables, dst_cols, my, pg) -> list[TableCheck]:
    """Row counts and checksums per table, each computed on its DB host."""
    import base64

    program = base64.b64encode(TABLESUM.encode()).decode()

    def types(table: str, columns: list[str]) -> str:
        kinds = {c: (typ, udt) for c, typ, udt in dst_cols[table.lower()]}
        out = []
        for c in columns:
            typ, udt = kinds[c]
            out.append(
                "b"
                if typ == "boolean"
                else "j"
                if typ in ("json", "jsonb")
                else "f"
                if typ in ("double precision", "real", "numeric")
                else "s"
            )
        return ",".join(out)

    def run(host: Host, fmt: str, dump: str, kinds: str, what: str) -> tuple[int, str]:
        script = (
            f"set -o pipefail\nprog=$(mktemp); trap 'rm -f \"$prog\"' EXIT\n"
            f'echo {program} | base64 -d > "$prog"\n{dump} | python3 "$prog" {fmt} {kinds}\n'
        )
        out = run_checked(fleet.remote(host), script, what, timeout=LOAD_TIMEOUT).stdout.split()
        return int(out[0]), out[1]

    def one(item) -> TableCheck:
        table, columns = item
        kinds = types(table, columns)
        n1, s1 = run(source, "mysql", my.dump_rows(table, columns), kinds, f"checksum {table} on {source.name}")
        n2, s2 = run(target, "pg", pg.dump_rows(table.lower(), columns), kinds, f"checksum {table} on {target.name}")
        return TableCheck(table, n1, n2, s1, s2)

    return fleet.parallel(one, tables)


def _back_to_mysql(fleet: Fleet, source_inv: Inventory, source: Host, nodes, report) -> None:
    """The comparison failed: MySQL takes writes again and Mattermost runs on it."""
    from .components.mysql.component import flavor_of
    from .components.mattermost import unit_name

    flavor = flavor_of(source)
    run_checked(
        fleet.remote(source),
        f"mysql --protocol=socket -e {_sq(flavor.writable())}",
        f"{source.name} writable again",
        timeout=60,
    )
    fleet.parallel(
        lambda h: run_checked(
            fleet.remote(h), f"timeout 700 systemctl start {unit_name(h)}", f"start Mattermost on {h.name}", timeout=720
        ),
        nodes,
    )
    fleet.say(f"back on {source.name}: writable, Mattermost started on it")


def _deploy_components(fleet: Fleet, inventory: Inventory, names: list[str], limit: list[str]) -> None:
    import io

    from . import runner
    from .registry import registry
    from .report import Reporter

    log = io.StringIO()
    report = runner.run(
        inventory,
        registry().by_name(names),
        mode="apply",
        secrets=fleet.secrets,
        reporter=Reporter(fleet.redactor, out=log),
        limit=limit,
    )
    if report.failed:
        errors = "; ".join(f"{n}: {h.error}" for n, h in report.hosts.items() if h.error)
        raise MMDeployError(f"deploying {', '.join(names)} failed: {errors}")
    fleet.say(f"{', '.join(names)}: {report.changed} change(s) on {', '.join(limit)}")


def _apply_op(fleet: Fleet, host: Host, step) -> None:
    from .facts import Fact

    remote = fleet.remote(host)
    facts = {}
    for command in step.facts():
        r = remote.run(command, timeout=60, what="probe")
        facts[command] = Fact(r.rc, r.stdout)
    change = step.check(facts)
    if change is not None:
        step.apply(remote, change)
