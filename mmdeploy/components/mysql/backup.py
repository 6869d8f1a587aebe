"""The MySQL family's part of backups: physical backups with mariabackup (MariaDB's
xtrabackup fork, Debian's mariadb-backup) streamed from the primary to the backup host,
the binary logs beside them, and the restore of the newest backup. No point-in-time
restore: the binlogs are kept for an operator who replays them by hand (mysqlbinlog).

The backup host's key may run only one program on a DB node, this forced command:
    role      "primary" or "replica"
    backup    an xbstream of a consistent physical backup on standard output
    binlogs   FLUSH BINARY LOGS, then a tar of the closed binlogs on standard output
    receive   standard input into the restore staging file (the stream of a restore)
Oracle MySQL's physical backup tool (xtrabackup) is not in Debian: on Oracle MySQL the
same commands run Percona's xtrabackup when it is installed (not exercised here).
"""

from __future__ import annotations

from .flavor import Flavor

FORCED = "/usr/local/sbin/mmdeploy-db-backup"
STAGING = "/var/lib/mmdeploy-restore"
LOG = "/var/log/mmdeploy-db-backup.log"


def tool(flavor: Flavor) -> str:
    return "mariabackup" if flavor.mariadb else "xtrabackup"


def packages(flavor: Flavor) -> list[str]:
    return ["mariadb-backup"] if flavor.mariadb else []


def forced_command(flavor: Flavor) -> str:
    t = tool(flavor)
    return f"""\
#!/bin/bash
# Managed by mmdeploy (components/backup.py): the only program the backup host's key may run
# on this database node (authorized_keys command=). See components/mysql/backup.py.
set -uo pipefail
case "${{SSH_ORIGINAL_COMMAND:-}}" in
role)
  ro=$(mysql --protocol=socket -NB -e 'SELECT @@global.read_only') || exit 1
  if [ "$ro" = 0 ]; then echo primary; else echo replica; fi ;;
backup)
  echo "$(date -Is) backup started" >> {LOG}
  exec {t} --backup --stream=xbstream --user=root --target-dir=/var/tmp 2>> {LOG} ;;
binlogs)
  mysql --protocol=socket -e 'FLUSH BINARY LOGS' || exit 1
  dir=$(mysql --protocol=socket -NB -e 'SELECT @@global.datadir') || exit 1
  current=$(mysql --protocol=socket -NB -e 'SHOW MASTER STATUS' | cut -f1)
  cd "$dir" && ls | grep -E '^mysql-bin\\.[0-9]+$' | grep -vxF "$current" | tar -c -T - ;;
receive)
  umask 077
  mkdir -p {STAGING}
  cat > {STAGING}/incoming.xbstream.partial && mv -f {STAGING}/incoming.xbstream.partial {STAGING}/incoming.xbstream ;;
*)
  echo "mmdeploy-db-backup: not allowed: ${{SSH_ORIGINAL_COMMAND:-(none)}}" >&2; exit 1 ;;
esac
"""


def restore_script(flavor: Flavor) -> str:
    """On the target DB node, after the stream arrived in the staging file: prepare it,
    stop the server, keep the old data directory aside, copy the backup back, start
    read-only (every node's config says so; the caller promotes it)."""
    t, s = tool(flavor), flavor.service
    return f"""\
set -e
test -s {STAGING}/incoming.xbstream || {{ echo "no backup stream in {STAGING}" >&2; exit 1; }}
datadir=$(mysql --protocol=socket -NB -e 'SELECT @@global.datadir' 2>/dev/null || echo /var/lib/mysql/)
datadir=${{datadir%/}}
rm -rf {STAGING}/prepared && mkdir -p {STAGING}/prepared
mbstream -x -C {STAGING}/prepared < {STAGING}/incoming.xbstream
{t} --prepare --target-dir={STAGING}/prepared 2>> {LOG}
systemctl stop {s}
aside="$datadir.before-restore-$(date -u +%Y%m%dT%H%M%SZ)"
mv "$datadir" "$aside"
mkdir -p "$datadir"
{t} --copy-back --target-dir={STAGING}/prepared --datadir="$datadir" 2>> {LOG}
chown -R mysql:mysql "$datadir"
rm -rf {STAGING}/prepared {STAGING}/incoming.xbstream
systemctl start {s}
echo "restored; the previous data directory is kept in $aside"
"""
