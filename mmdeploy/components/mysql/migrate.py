"""The MySQL family's side of `inv db.migrate --to postgresql` (mmdeploy/migrate.py): the
account pgloader reads with, the checks Mattermost's migration guide asks for before a
migration, and making the old tier read-only (kept for a rollback).

Mattermost's guide ("Manually migrate from MySQL to PostgreSQL") lists columns that are
TEXT on MySQL and bounded VARCHAR on PostgreSQL; a longer value fails the load. It also
notes JSON values holding the escape \\u0000, which PostgreSQL's jsonb refuses.
"""

from __future__ import annotations

from .flavor import DATABASE, _lit

# (table, column, the PostgreSQL schema's limit), from Mattermost's migration guide.
VARCHAR_LIMITS = (
    ("Audits", "Action", 512),
    ("Audits", "ExtraInfo", 1024),
    ("ClusterDiscovery", "HostName", 512),
    ("Commands", "IconURL", 1024),
    ("Commands", "AutoCompleteDesc", 1024),
    ("Commands", "AutoCompleteHint", 1024),
    ("Compliances", "Keywords", 512),
    ("Compliances", "Emails", 1024),
    ("FileInfo", "Path", 512),
    ("FileInfo", "ThumbnailPath", 512),
    ("FileInfo", "PreviewPath", 512),
    ("FileInfo", "Name", 256),
    ("FileInfo", "MimeType", 256),
    ("LinkMetadata", "URL", 2048),
    ("RemoteClusters", "SiteURL", 512),
    ("RemoteClusters", "Topics", 512),
    ("Sessions", "DeviceId", 512),
    ("Systems", "Value", 1024),
    ("UploadSessions", "FileName", 256),
    ("UploadSessions", "Path", 512),
)
# Left out of the load, as the guide does: plugin tables migrated their own way (Playbooks,
# Boards), the old migration tables, the database config store, Calls.
EXCLUDED = (
    "schema_migrations",
    "db_migrations",
    "db_lock",
    "Configurations",
    "ConfigurationFiles",
    "db_config_migrations",
    "calls",
)
EXCLUDED_PREFIXES = ("IR_", "focalboard")
MIGRATION_USER = "mmuser"  # the same account, on the pgloader host's address, SELECT only


def excluded(table: str) -> bool:
    return table.lower() in {t.lower() for t in EXCLUDED} or table.startswith(EXCLUDED_PREFIXES)


def query(sql: str) -> str:
    return f"mysql --protocol=socket -NB {DATABASE} <<'MMDEPLOY_SQL'\n{sql}\nMMDEPLOY_SQL\n"


def columns_sql() -> str:
    """Every table's columns: table, column, data type."""
    return (
        f"SELECT table_name, column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = {_lit(DATABASE)} ORDER BY table_name, ordinal_position;"
    )


def row_counts_sql(tables: list[str]) -> str:
    return "\n".join(f"SELECT {_lit(t)}, COUNT(*) FROM `{t}`;" for t in tables)


def too_long_sql(present: set[tuple[str, str]]) -> str:
    """Rows longer than the PostgreSQL schema allows, per documented column present here."""
    parts = [
        f"SELECT {_lit(f'{t}.{c} > {n}')}, COUNT(*) FROM `{t}` WHERE CHAR_LENGTH(`{c}`) > {n}"
        for t, c, n in VARCHAR_LIMITS
        if (t.lower(), c.lower()) in present
    ]
    return ";\n".join(parts) + ";" if parts else "SELECT 'none', 0;"


def null_escape_sql(json_columns: list[tuple[str, str]]) -> str:
    parts = [
        f"SELECT {_lit(f'{t}.{c}')}, COUNT(*) FROM `{t}` WHERE `{c}` LIKE '%\\\\\\\\u0000%'" for t, c in json_columns
    ]
    return ";\n".join(parts) + ";" if parts else "SELECT 'none', 0;"


def grant_reader(address: str, password: str) -> str:
    """SQL (on standard input) for the account pgloader reads with from `address`."""
    account = f"{_lit(MIGRATION_USER)}@{_lit(address)}"
    return (
        f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {_lit(password)};\n"
        f"ALTER USER {account} IDENTIFIED BY {_lit(password)};\n"
        f"GRANT SELECT, SHOW VIEW ON `{DATABASE}`.* TO {account};\n"
    )


def read_only_script(flavor) -> str:
    """The tier stops taking writes (it is kept for a rollback); commits in flight finish."""
    return (
        f"set -e\nmysql --protocol=socket <<'SQL'\nSET SESSION lock_wait_timeout = 30;\n{flavor.read_only()}\nSQL\n"
        "test \"$(mysql --protocol=socket -NB -e 'SELECT @@global.read_only')\" = 1\n"
    )


def dump_rows(table: str, columns: list[str]) -> str:
    """A table's rows in the client's batch format (tab-separated, escaped, NULL), streamed."""
    cols = ", ".join(f"`{c}`" for c in columns)
    return f"mysql --protocol=socket -NB --quick {DATABASE} -e {_shell(f'SELECT {cols} FROM `{table}`')}"


def _shell(text: str) -> str:
    import shlex

    return shlex.quote(text)
