"""Ops: check with fake facts (what change each state needs), and apply for real on local
files (LocalRemote runs the same bash scripts the hosts get)."""

import base64
import getpass
import grp
import os

import pytest

from mmdeploy.errors import StepFailed
from mmdeploy.facts import Batched, BatchKind, Fact, FactCache
from mmdeploy.ops import SQL, Command, Directory, File, Group, Packages, Service, Sysctl, User, unit

from .localremote import LocalRemote

ME = getpass.getuser()


def fact(out: str, rc: int = 0) -> Fact:
    return Fact(rc, out)


def only(step, out: str, rc: int = 0):
    """check() with the single fact the step reads answering `out`."""
    (probe,) = step.facts()
    return step.check({probe: fact(out, rc)})


# --- file ------------------------------------------------------------------------------


def file_fact(content: bytes, owner="root", group="root", mode="644") -> str:
    return f"regular file|{owner}|{group}|{mode}|{len(content)}\nb64:{base64.b64encode(content).decode()}"


def test_file_missing_is_created_with_a_diff():
    change = only(File("/etc/x.conf", "a=1\n"), "")
    assert change.summary == "create"
    assert "--- /dev/null" in change.diff and "+a=1" in change.diff


def test_file_identical_needs_nothing():
    assert only(File("/etc/x.conf", "a=1\n"), file_fact(b"a=1\n")) is None


def test_file_content_and_attributes_differ():
    step = File("/etc/x.conf", "a=2\n", owner="mm", group="mm", mode="0640")
    change = only(step, file_fact(b"a=1\n"))
    assert change.summary == "update content, owner root:root -> mm:mm, mode 0644 -> 0640"
    assert "-a=1" in change.diff and "+a=2" in change.diff


def test_file_mode_only():
    change = only(File("/etc/x.conf", "a=1\n", mode="0600"), file_fact(b"a=1\n"))
    assert change == type(change)("mode 0644 -> 0600", "")


def test_large_file_compared_by_sha256():
    content = b"x" * 10
    import hashlib

    same = f"regular file|root|root|644|10\nsha:{hashlib.sha256(content).hexdigest()}"
    assert only(File("/big", content), same) is None
    assert only(File("/big", b"y" * 10), same).summary == "update content (large file, no diff)"


def test_file_replaces_a_directory():
    assert only(File("/etc/x", "a"), "directory|root|root|755|4096").summary == "replace directory with a file"


def test_file_apply_is_atomic_sets_mode_and_runs_then(tmp_path):
    path = tmp_path / "app.conf"
    step = File(str(path), "port=1\n", owner=ME, group=ME, mode="0600", then=f"touch {tmp_path}/reloaded")
    remote = LocalRemote(None)
    cache = FactCache(remote)
    change = step.check(cache.get(step.facts()))
    step.apply(remote, change)
    assert path.read_text() == "port=1\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "reloaded").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".mmdeploy")] == []
    cache.invalidate()
    assert step.check(cache.get(step.facts())) is None  # idempotent


def test_file_validation_failure_keeps_the_live_file(tmp_path):
    path = tmp_path / "nginx.conf"
    path.write_text("good\n")
    step = File(str(path), "bad\n", owner=ME, group=ME, validate="grep -q good {}")
    with pytest.raises(StepFailed, match="validation failed"):
        step.apply(LocalRemote(None), step.check(FactCache(LocalRemote(None)).get(step.facts())))
    assert path.read_text() == "good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["nginx.conf"]  # temp file cleaned up


def test_file_content_never_in_the_log_script(tmp_path):
    remote = LocalRemote(None, log_path=tmp_path / "log")
    step = File(str(tmp_path / "secret.conf"), "password=hunter2-very-secret\n", owner=ME, group=ME)
    step.apply(remote, step.check(FactCache(remote).get(step.facts())))
    log = (tmp_path / "log").read_text()
    assert "hunter2" not in log
    assert base64.b64encode(b"password=hunter2-very-secret\n").decode() not in log
    assert "bytes, sha256" in log


def test_unit_reloads_systemd():
    step = unit("x.service", "[Service]\n")
    assert step.path == "/etc/systemd/system/x.service" and step.then == "systemctl daemon-reload"


# --- directory -------------------------------------------------------------------------


def test_directory_states(tmp_path):
    d = Directory("/srv/x", owner="mm", group="mm", mode="0750")
    assert only(d, "").summary == "create"
    assert only(d, "directory|mm|mm|750|4096") is None
    assert only(d, "directory|root|mm|755|4096").summary == "owner root:mm -> mm:mm, mode 0755 -> 0750"
    assert "expected a directory" in only(d, "regular file|mm|mm|750|3").summary
    real = Directory(str(tmp_path / "a"), owner=ME, group=ME, mode="0700")
    remote = LocalRemote(None)
    real.apply(remote, real.check(FactCache(remote).get(real.facts())))
    assert oct((tmp_path / "a").stat().st_mode & 0o777) == "0o700"


# --- packages --------------------------------------------------------------------------


def test_packages_missing_and_present():
    step = Packages("nginx", "curl")
    assert only(step, "curl\tii \t7.88\n").summary == "install nginx"
    assert only(step, "nginx\tii \t1.22\ncurl\tii \t7.88\n") is None
    assert only(step, "nginx\trc \t1.22\ncurl\tii \t7.88\n").summary == "install nginx"  # removed, config left


def test_package_version_pin_and_absent():
    assert only(Packages("nginx=1.22-1"), "nginx\tii \t1.20-1\n").summary == "install nginx=1.22-1"
    assert only(Packages("nginx=1.22-1"), "nginx\tii \t1.22-1\n") is None
    assert only(Packages("nginx", state="absent"), "nginx\tii \t1\n").summary == "remove nginx"
    assert only(Packages("nginx", state="absent"), "") is None


def test_package_probe_reads_dpkg_for_real():
    step = Packages("bash", "no-such-package-mmdeploy")
    facts = FactCache(LocalRemote(None)).get(step.facts())
    assert step.check(facts).summary == "install no-such-package-mmdeploy"


def test_packages_to_install_are_what_a_run_may_fetch_ahead():
    step = Packages("nginx", "curl=7.88")
    assert step.downloads(only(step, "")) == ["nginx", "curl=7.88"]
    absent = Packages("nginx", state="absent")
    assert absent.downloads(only(absent, "nginx\tii \t1\n")) == []


@pytest.mark.parametrize(
    "holder, listed, waits",
    [
        ("alive", "jq", True),  # fetching one of the install's packages: wait for it
        ("alive", "postgresql-15", False),  # fetching another component's: go on
        ("dead", "jq", False),  # a fetcher killed with its run: nothing to wait for
    ],
)
def test_an_install_waits_only_for_a_live_fetch_of_its_own_packages(tmp_path, holder, listed, waits):
    """The head of the install script (ops.apt._WAIT), run for real against a stand-in of
    the fetcher's FETCHING file: its pid, then the packages it is fetching."""
    import subprocess
    import time

    from mmdeploy.ops import apt

    fetching = tmp_path / "fetching"
    fetcher = subprocess.Popen(["sleep", "30"])
    if holder == "dead":
        fetcher.kill()
        fetcher.wait()
    fetching.write_text(f"{fetcher.pid}\n{listed}\n")
    script = apt._WAIT.format(fetching=fetching, patterns="-e rsync -e jq")
    try:
        t0 = time.monotonic()
        waiting = subprocess.Popen(["bash", "-c", script])
        time.sleep(1.0)
        assert (waiting.poll() is None) == waits
        fetching.unlink()  # the fetcher's transaction done (it rewrites or removes the file)
        assert waiting.wait(timeout=5) == 0 and time.monotonic() - t0 < 5
    finally:
        fetcher.kill()


# --- service ---------------------------------------------------------------------------


def test_service_states():
    """The probe is `systemctl show`: ActiveState, then UnitFileState (empty: no such unit)."""
    s = Service("nginx")
    assert s.facts() == ["systemctl show -p ActiveState -p UnitFileState --value nginx"]
    assert only(s, "active\nenabled\n") is None
    assert only(s, "inactive\ndisabled\n").summary == "enable + start (was disabled, inactive)"
    assert only(s, "failed\nenabled\n").summary == "start (was enabled, failed)"
    assert only(s, "inactive\nmasked\n").summary.startswith("unmask + enable + start")
    assert only(s, "active\nstatic\n") is None
    assert only(s, "inactive\n\n").summary == "enable + start (was not-found, inactive)"
    stopped = Service("nginx", enabled=False, running=False)
    assert only(stopped, "active\nenabled\n").summary == "disable + stop (was enabled, active)"


def test_batched_facts_of_a_kind_are_read_by_one_command():
    """Facts of one BatchKind become one command in the batch; each gets its own part, read
    as it would be alone; a joined output that cannot be split falls back to each alone."""
    calls = []

    def command(args):
        calls.append(list(args))
        return "printf 'part-%s\\n' " + " ".join(args)

    kind = BatchKind("test", command, lambda out, args: [f"{line}\n" for line in out.split("\n")[: len(args)]])
    a, b = Batched("echo part-a", kind, "a"), Batched("echo part-b", kind, "b")
    remote = LocalRemote(None)
    got = FactCache(remote).get([a, "echo plain", b])
    assert {k: f.out for k, f in got.items()} == {
        "echo part-a": "part-a\n",
        "echo plain": "plain\n",
        "echo part-b": "part-b\n",
    }
    assert calls == [["a", "b"]] and remote.round_trips == 1
    broken = BatchKind("broken", command, lambda out, args: None)
    got = FactCache(LocalRemote(None)).get([Batched("echo x", broken, "x"), Batched("echo y", broken, "y")])
    assert {k: f.out for k, f in got.items()} == {"echo x": "x\n", "echo y": "y\n"}
    # Alone, a batched fact is its own command.
    assert FactCache(LocalRemote(None)).get([Batched("echo solo", kind, "s")])["echo solo"].out == "solo\n"


def _files_alone_and_together(paths_modes):
    from mmdeploy.ops.files import file_probe

    probes = [file_probe(path, mode) for path, mode in paths_modes]
    alone = {p: FactCache(LocalRemote(None)).get([str(p)])[str(p)].out for p in probes}
    remote = LocalRemote(None)
    together = {p: f.out for p, f in FactCache(remote).get(probes).items()}
    return alone, together, remote


def test_file_facts_of_a_host_are_read_by_one_command_as_each_reads_alone(tmp_path):
    from mmdeploy.ops.files import INLINE_LIMIT

    (tmp_path / "small.conf").write_text("a=1\n")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "big").write_bytes(b"x" * (INLINE_LIMIT + 1))
    (tmp_path / "odd name|with bar").write_bytes(bytes(range(256)))
    (tmp_path / "secret.key").write_text("hunter2\n")
    (tmp_path / "dir").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    asked = [
        (str(tmp_path / "small.conf"), "c"),
        (str(tmp_path / "empty"), "c"),
        (str(tmp_path / "big"), "c"),
        (str(tmp_path / "odd name|with bar"), "c"),
        (str(tmp_path / "secret.key"), "h"),
        (str(tmp_path / "small.conf"), "h"),  # asked twice: inlined once, hashed from that
        (str(tmp_path / "dir"), "s"),
        (str(tmp_path / "dir"), "c"),
        (str(tmp_path / "dangling"), "c"),
        (str(tmp_path / "missing"), "c"),
        (str(tmp_path / "missing"), "s"),
    ]
    alone, together, remote = _files_alone_and_together(asked)
    assert together == alone
    assert remote.round_trips == 1 and remote.scripts[0].count("stat -c") == 1  # not read one by one
    assert "hunter2" not in remote.scripts[0] and "aHVudGVyMg" not in str(together)  # hashed, never inlined
    # A step reads its part as it reads its own probe: the same content compares equal.
    small = str(tmp_path / "small.conf")
    mode = f"{os.stat(small).st_mode & 0o7777:04o}"
    step = File(small, "a=1\n", owner=ME, group=grp.getgrgid(os.getgid()).gr_name, mode=mode)
    assert step.check({step.facts()[0]: Fact(0, together[step.facts()[0]])}) is None


def test_file_facts_that_do_not_add_up_are_read_one_by_one(tmp_path):
    """A symlink's stat size is not its target's: the joined content does not split, so
    each file is read alone, and still as each reads alone."""
    (tmp_path / "target").write_text("target body\n")
    os.symlink(tmp_path / "target", tmp_path / "link")
    asked = [(str(tmp_path / "link"), "c"), (str(tmp_path / "target"), "c")]
    alone, together, remote = _files_alone_and_together(asked)
    assert together == alone
    assert remote.round_trips == 2


def test_services_are_read_by_one_systemctl():
    from mmdeploy.ops.systemd import UNITS

    steps = [Service("nginx"), Service("postgresql@15-main")]
    assert UNITS.command([s.unit for s in steps]) == (
        "systemctl show -p ActiveState -p UnitFileState -- nginx postgresql@15-main"
    )
    out = "ActiveState=inactive\nUnitFileState=\n\nActiveState=active\nUnitFileState=enabled\n"
    parts = UNITS.split(out, ["nginx", "postgresql@15-main"])
    assert parts == ["inactive\n\n", "active\nenabled\n"]
    assert steps[0].check({steps[0].facts()[0]: fact(parts[0])}).summary == "enable + start (was not-found, inactive)"
    assert steps[1].check({steps[1].facts()[0]: fact(parts[1])}) is None
    assert UNITS.split("ActiveState=active\nUnitFileState=enabled\n", ["a", "b"]) is None  # a unit missing


def test_sql_guards_on_one_database_are_read_in_one_session():
    steps = [
        SQL("role a", "postgresql", "CREATE ROLE a;", guard="select 1 from pg_roles where rolname = 'a'"),
        SQL("role b", "postgresql", "CREATE ROLE b;", guard="select 1 from pg_roles where rolname = 'b';"),
    ]
    probes = [s.facts()[0] for s in steps]
    assert probes[0] == "runuser -u postgres -- psql -XAtq  -c 'select 1 from pg_roles where rolname = '\"'\"'a'\"'\"''"
    kind = probes[0].kind
    assert kind is not None and kind.name == probes[1].kind.name == "sql guards postgresql "
    assert kind.command([p.arg for p in probes]) == (
        "runuser -u postgres -- psql -XAtq  <<'MMDEPLOY_SQL'\n"
        "\\echo MMDEPLOY-GUARD 0\nselect 1 from pg_roles where rolname = 'a';\n"
        "\\echo MMDEPLOY-GUARD 1\nselect 1 from pg_roles where rolname = 'b';\nMMDEPLOY_SQL"
    )
    parts = kind.split("MMDEPLOY-GUARD 0\n1\nMMDEPLOY-GUARD 1\n", [p.arg for p in probes])
    assert parts == ["1\n", ""]
    assert steps[0].check({probes[0]: fact(parts[0])}) is None
    assert steps[1].check({probes[1]: fact(parts[1])}).summary == "run"
    assert kind.split("psql: error: connection refused\n", [p.arg for p in probes]) is None
    assert kind.split("MMDEPLOY-GUARD 0\n1\n", [p.arg for p in probes]) is None  # one missing
    mysql = SQL("db", "mysql", "CREATE DATABASE x;", guard="SELECT 1 FROM DUAL", database="x").facts()[0]
    assert mysql.kind.command([mysql.arg]).startswith("mysql --protocol=socket -NB --force x <<'MMDEPLOY_SQL'\n")


# --- users -----------------------------------------------------------------------------


def test_user_and_group():
    assert only(Group("mm"), "", rc=2).summary == "create"
    assert only(Group("mm"), "mm:x:999:\n") is None
    u = User("mm", home="/opt/mm")
    assert only(u, "", rc=2).summary == "create"
    assert only(u, "mm:x:999:999::/opt/mm:/usr/sbin/nologin\nmm\n") is None
    assert only(u, "mm:x:999:999::/home/mm:/bin/bash\nusers\n").summary == (
        "group users -> mm, home /home/mm -> /opt/mm, shell /bin/bash -> /usr/sbin/nologin"
    )


# --- sysctl, command, sql --------------------------------------------------------------


def test_sysctl():
    s = Sysctl("vm.swappiness", 10)
    assert only(s, "10\n|\nvm.swappiness = 10\n") is None
    assert only(s, "60\n|\nvm.swappiness = 10\n").summary == "live 60 -> 10"
    assert only(s, "10\n|\n").summary == "persist in /etc/sysctl.d/60-mmdeploy-vm.swappiness.conf"


def test_command_guard():
    assert Command("x", "true").check({}).summary == "run"  # unguarded: always runs
    c = Command("init", "make-it", unless="test -e /done")
    assert only(c, "", rc=0) is None
    assert only(c, "", rc=1).summary == "run"


def test_sql_guard_and_statement_on_stdin(tmp_path):
    step = SQL(
        "create user",
        "postgresql",
        "CREATE ROLE mm PASSWORD 's3cret-pw';",
        guard="SELECT 1 FROM pg_roles WHERE rolname = 'mm'",
        database="mattermost",
    )
    (probe,) = step.facts()
    assert probe.startswith("runuser -u postgres -- psql -XAtq -d mattermost -c ")
    assert "s3cret" not in probe  # the guard is on a command line; the statement never is
    assert step.check({probe: fact("1\n")}) is None
    assert step.check({probe: fact("")}).summary == "run"
    assert step.check({probe: fact("", rc=2)}).summary.startswith("run (guard query could not run")
    remote = LocalRemote(None)
    remote.run = lambda script, **kw: remote.scripts.append(script) or type("R", (), {"ok": True, "rc": 0})()
    step.apply(remote, step.check({probe: fact("")}))
    (script,) = remote.scripts
    first_line, _, rest = script.partition("\n")
    assert "s3cret" not in first_line and "<<'MMDEPLOY_SQL'" in first_line
    assert "CREATE ROLE mm" in rest
    mysql = SQL("u", "mysql", "SELECT 1", guard="SELECT 1")
    assert mysql.facts()[0].startswith("mysql --protocol=socket -NB")
    with pytest.raises(ValueError):
        SQL("u", "oracle", "SELECT 1")


# --- facts -----------------------------------------------------------------------------


def test_facts_batched_in_one_round_trip_and_cached():
    remote = LocalRemote(None)
    cache = FactCache(remote)
    facts = cache.get(["echo one", "printf 'no newline'", "exit 3", "echo err >&2; echo out", "echo one"])
    assert remote.round_trips == 1
    assert facts["echo one"] == Fact(0, "one\n")
    assert facts["printf 'no newline'"] == Fact(0, "no newline")
    assert facts["exit 3"].rc == 3  # an exit inside one fact does not end the batch
    assert facts["echo err >&2; echo out"] == Fact(0, "out\n")
    cache.get(["echo one"])
    assert remote.round_trips == 1  # cached
    assert cache.host("cpus") == str(os.cpu_count())  # host facts came with the first batch
    cache.invalidate()
    cache.get(["echo one"])
    assert remote.round_trips == 2
    assert cache.host("cpus") and remote.round_trips == 2  # host facts survive invalidation


def test_fact_output_is_not_logged(tmp_path):
    """Facts carry whole files base64-encoded, where the redactor cannot see a secret."""
    secret_file = tmp_path / "app.conf"
    secret_file.write_text("password=hunter2-long-secret\n")
    remote = LocalRemote(None, log_path=tmp_path / "log")
    step = File(str(secret_file), "x")
    FactCache(remote).get(step.facts())
    log = (tmp_path / "log").read_text()
    assert base64.b64encode(secret_file.read_bytes()).decode() not in log and "hunter2" not in log


@pytest.mark.parametrize("key", ["a;touch /pwned", "net.core.somaxconn x", "../../etc/passwd", "$(id).x", ""])
def test_sysctl_refuses_a_key_that_is_not_a_kernel_parameter_name(key):
    """The key names a file in Sysctl's scripts: anything but a parameter name is refused."""
    with pytest.raises(ValueError, match="kernel parameter name"):
        Sysctl(key, 1)
