"""PostgreSQL's side of `inv db.migrate --to postgresql` (mmdeploy/migrate.py): pgloader's
load file after Mattermost's migration guide (data only into the schema the same
Mattermost release created; its casting rules and exclusions), the full-text indexes
dropped before the load and made again after, and the reads the comparison needs.

pgloader (Debian's 3.6.9) runs on the PostgreSQL primary as `postgres`, writing over the
local socket; it reads MySQL over TCP with a SELECT-only account for that host. The load
file holds that account's password: written 0600 for postgres, removed after the run.
"""

from __future__ import annotations

import shlex

from .config import DATABASE, USER

WORK = "/var/lib/postgresql/mmdeploy-migration"
LOAD_FILE = f"{WORK}/migration.load"
# Mattermost's enum columns on PostgreSQL (Channels.Type is channel_type, ...): the guide
# casts them by name; only those this schema has are named.
ENUM_COLUMNS = (
    ("Channels", "Type", "channel_type"),
    ("Teams", "Type", "team_type"),
    ("UploadSessions", "Type", "upload_session_type"),
    ("ChannelBookmarks", "Type", "channel_bookmark_type"),
)
FULL_TEXT_INDEXES = ("idx_posts_message_txt", "idx_fileinfo_content_txt")


def psql(sql: str, database: str = DATABASE) -> str:
    return (
        f"cd /tmp && runuser -u postgres -- psql -XAtq -F $'\\t' -v ON_ERROR_STOP=1 -d {database} "
        f"<<'MMDEPLOY_SQL'\n{sql}\nMMDEPLOY_SQL\n"
    )


def columns_sql() -> str:
    return (
        "select table_name, column_name, data_type, udt_name from information_schema.columns "
        "where table_schema = 'public' order by table_name, ordinal_position;"
    )


def load_file(
    source_address: str,
    password: str,
    enums: list[tuple[str, str, str]],
    excluded: tuple[str, ...],
    excluded_prefixes: tuple[str, ...],
) -> str:
    """The load command: Mattermost's documented baseline (data only, its casting rules,
    its exclusions), truncating each target table first so that a second run starts
    clean, and the schema renamed around the load as the guide does (pgloader writes to
    the schema named after the MySQL database). In pgloader's connection string a
    password is everything up to the '@' before the host, so an '@' of its own is
    written '@@' (its grammar's doubled-at-sign); any other character is taken as is."""
    casts = [f'column {t}.{c} to "{udt}" drop typemod' for t, c, udt in enums]
    casts += [
        "column Drafts.Priority to text",
        "type int when (= precision 11) to integer drop typemod",
        "type bigint when (= precision 20) to bigint drop typemod",
        "type text to varchar drop typemod using remove-null-characters",
        "type tinyint when (<= precision 4) to boolean using tinyint-to-boolean",
        "type json to jsonb drop typemod using remove-null-characters",
    ]
    excluding = [f"~<{p}>" for p in excluded_prefixes] + [f"'{t}'" for t in excluded]
    return f"""\
LOAD DATABASE
  FROM mysql://mmuser:{password.replace("@", "@@")}@{source_address}:3306/{DATABASE}
  INTO pgsql://postgres@unix:/var/run/postgresql:5432/{DATABASE}

WITH data only, truncate,
  workers = 4, concurrency = 1,
  multiple readers per thread, rows per range = 10000,
  prefetch rows = 10000, batch rows = 2500,
  create no tables, create no indexes, preserve index names

SET PostgreSQL PARAMETERS
  maintenance_work_mem to '128MB',
  work_mem to '12MB'

SET MySQL PARAMETERS
  net_read_timeout = '120',
  net_write_timeout = '120'

CAST {("," + chr(10) + "     ").join(casts)}

EXCLUDING TABLE NAMES MATCHING {", ".join(excluding)}

BEFORE LOAD DO
  $$ ALTER SCHEMA public RENAME TO {DATABASE}; $$

AFTER LOAD DO
  $$ ALTER SCHEMA {DATABASE} RENAME TO public; $$,
  $$ ALTER USER {USER} SET SEARCH_PATH TO 'public'; $$;
"""


def write_load_file(content: str) -> str:
    """A script writing the load file (it holds a password: 0600, postgres only). The
    content goes in base64 on standard input, never on a command line."""
    import base64

    encoded = base64.b64encode(content.encode()).decode()
    return (
        f"set -e\ninstall -d -o postgres -g postgres -m 0700 {WORK}\n"
        f"umask 077\necho {encoded} | base64 -d > {LOAD_FILE}\nchown postgres:postgres {LOAD_FILE}\n"
    )


def pgloader(dry_run: bool) -> str:
    flag = " --dry-run" if dry_run else ""
    return (
        f"set -o pipefail\ncd {WORK}\n"
        f"runuser -u postgres -- pgloader{flag} --logfile {WORK}/pgloader.log "
        f"{LOAD_FILE} 2>&1 | tail -n 60\n"
    )


def remove_load_file() -> str:
    return f"rm -f {LOAD_FILE}"


def index_definitions_sql() -> str:
    names = ", ".join(f"'{n}'" for n in FULL_TEXT_INDEXES)
    return f"select indexdef from pg_indexes where schemaname = 'public' and indexname in ({names});"


def drop_indexes_sql() -> str:
    return "\n".join(f"DROP INDEX IF EXISTS public.{n};" for n in FULL_TEXT_INDEXES)


def recreate_sql(definitions: list[str]) -> str:
    return "\n".join(d.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1) + ";" for d in definitions)


def dump_rows(table: str, columns: list[str]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    return (
        f"cd /tmp && runuser -u postgres -- psql -XAtq -d {DATABASE} -c "
        f"{shlex.quote(f'COPY (SELECT {cols} FROM public.{table}) TO STDOUT')}"
    )


def row_counts_sql(tables: list[str]) -> str:
    return "\n".join(f"select '{t}', count(*) from public.{t};" for t in tables)


def after_load_sql() -> str:
    """pgloader sets the database's search_path to the schema named after the MySQL
    database, which the load renamed back to public: the guide sets mmuser's own
    search_path; every other role (the superuser, the exporter) gets the default back."""
    return f"ALTER DATABASE {DATABASE} RESET search_path;"
