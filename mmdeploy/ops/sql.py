"""An SQL statement guarded by a query: it runs only when the guard returns no row.

Statements go to the client on standard input, never on its command line, so passwords in
them stay out of the process list (and out of logs: the redactor masks them)."""

from __future__ import annotations

import shlex
from typing import Callable, Mapping

from ..facts import Batched, BatchKind, Fact
from ..remote import Remote
from ..step import Change, Step, run_checked

CLIENTS = {
    # engine: (guard command with {db} and {query}, apply command with {db})
    "postgresql": (
        "runuser -u postgres -- psql -XAtq {db} -c {query}",
        "runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 {db}",
    ),
    "mysql": ("mysql --protocol=socket -NB {db} -e {query}", "mysql --protocol=socket {db}"),
}


# Marks where each guard's rows start when several run in one client session.
MARK = "MMDEPLOY-GUARD"
# The same guards in one session: each its marker, then its query (psql reads its input
# whole; mysql goes on past a failed statement with --force, and then exits non-zero).
SESSIONS = {
    "postgresql": (
        "runuser -u postgres -- psql -XAtq {db} <<'MMDEPLOY_SQL'\n{body}MMDEPLOY_SQL",
        "\\echo " + MARK + " {i}\n{query};\n",
    ),
    "mysql": (
        "mysql --protocol=socket -NB --force {db} <<'MMDEPLOY_SQL'\n{body}MMDEPLOY_SQL",
        "SELECT '" + MARK + " {i}';\n{query};\n",
    ),
}


def _guards(engine: str, db: str) -> BatchKind:
    """A host's guard queries on one database, read in one client session (a client and
    its server-side backend cost more than all the shell around them)."""
    session, each = SESSIONS[engine]

    def command(queries: list[str]) -> str:
        body = "".join(each.format(i=i, query=q.rstrip().rstrip(";")) for i, q in enumerate(queries))
        return session.format(db=db, body=body)

    def split(out: str, queries: list[str]) -> list[str] | None:
        parts: list[list[str]] = []
        for line in out.splitlines():
            if line == f"{MARK} {len(parts)}":
                parts.append([])
            elif parts:
                parts[-1].append(line)
            elif line:
                return None
        if len(parts) != len(queries):
            return None
        return ["".join(f"{row}\n" for row in rows) for rows in parts]

    return BatchKind(f"sql guards {engine} {db}", command, split)


class SQL(Step):
    timeout = 120

    def __init__(
        self,
        name: str,
        engine: str,
        statement: str,
        *,
        guard: str | None = None,
        database: str | None = None,
        notify: tuple[str, ...] = (),
    ):
        if engine not in CLIENTS:
            raise ValueError(f"engine must be one of {sorted(CLIENTS)}, got {engine!r}")
        self.name, self.engine, self.statement = f"sql {name}", engine, statement
        self.notify = tuple(notify)
        db = ""
        if database:
            db = ("-d " if engine == "postgresql" else "") + shlex.quote(database)
        guard_cmd, self._apply_cmd = CLIENTS[engine]
        self._apply_cmd = self._apply_cmd.format(db=db)
        self._probe = (
            Batched(guard_cmd.format(db=db, query=shlex.quote(guard)), _guards(engine, db), guard) if guard else None
        )

    def facts(self) -> list[str]:
        return [self._probe] if self._probe else []

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        if self._probe is None:
            return Change("run")
        fact = facts[self._probe]
        if not fact.ok:
            return Change("run (guard query could not run: database not reachable yet)")
        return None if fact.out.strip() else Change("run")

    def apply(self, remote: Remote, change: Change) -> None:
        script = f"{self._apply_cmd} <<'MMDEPLOY_SQL'\n{self.statement}\nMMDEPLOY_SQL\n"
        run_checked(remote, script, self.name, timeout=self.timeout)


class AccountPassword(SQL):
    """A database account's password is the one in the secrets: `probe` reads the stored
    verifiers (a fact, whose output is never logged) and `matches(fact)` compares them
    with the password on the control machine (passwords.py): True, nothing to do; False,
    `statement` (an ALTER, on standard input) sets it; None, the account does not exist
    yet (the step that creates it sets the password)."""

    def __init__(
        self,
        name: str,
        engine: str,
        statement: str,
        *,
        probe: str,
        matches: Callable[[Fact], bool | None],
        notify: tuple[str, ...] = (),
    ):
        super().__init__(name, engine, statement, notify=notify)
        self.name = f"password of {name}"
        self._account_probe, self._matches = probe, matches

    def facts(self) -> list[str]:
        return [self._account_probe]

    def check(self, facts: Mapping[str, Fact]) -> Change | None:
        fact = facts[self._account_probe]
        if not fact.ok:
            return Change("set (its current password could not be read: database not reachable yet)")
        return Change("set (changed in the secrets)") if self._matches(fact) is False else None
