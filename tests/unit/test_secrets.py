"""Secrets in every form: the secrets file (checked, private, flushed), redaction of every
escaped form, escaping for each file a secret is written to, password verifiers checked
on the control machine, Mattermost's secret settings masked in config diffs, and error
messages redacted on their way out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shlex
import stat
import threading
from urllib.parse import quote

import pytest
import yaml

from mmdeploy import passwords
from mmdeploy.components import mattermost as mm
from mmdeploy.errors import InventoryError, MMDeployError, StepFailed
from mmdeploy.facts import Fact
from mmdeploy.ops.files import JsonSettings, file_probe
from mmdeploy.secrets import REDACTED, Redactor, Secret, Secrets, escaped_forms, option_file_value

# Quotes, backslashes, %, @, :, spaces, '#', '$', backquotes and non-ASCII.
HOSTILE = "dq\"sq'bs\\pc%41at@co:sp ce#h$(id)`x`;ü€"
DB = Secret("db_password", "the database password")
ADMIN = Secret("mattermost_admin_password", "the admin password", max_bytes=72)


def test_every_escaped_form_is_redacted():
    r = Redactor()
    r.add(HOSTILE)
    forms = {
        "json": json.dumps(HOSTILE)[1:-1],
        "json-utf8": json.dumps(HOSTILE, ensure_ascii=False)[1:-1],
        "url": quote(HOSTILE, safe=""),
        "url-path": quote(HOSTILE),
        "sql": HOSTILE.replace("'", "''"),
        "mysql": HOSTILE.replace("\\", "\\\\").replace("'", "''"),
        "shell": shlex.quote(HOSTILE),
        "env": HOSTILE.replace("\\", "\\\\").replace('"', '\\"'),
        "pgpass": HOSTILE.replace("\\", "\\\\").replace(":", "\\:"),
        "option-file": option_file_value(HOSTILE),
        "repr": repr(HOSTILE)[1:-1],
    }
    for kind, form in forms.items():
        text = f"before {form} after"
        assert r(text) == f"before {REDACTED} after", kind
    assert escaped_forms(HOSTILE) >= set(forms.values())


def _write(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_an_empty_value_is_refused_not_the_string_none(tmp_path):
    path = _write(tmp_path / "s.yml", "db_password:\n")
    with pytest.raises(InventoryError, match=rf"{path}:1: db_password: empty value"):
        Secrets(path, Redactor(), [DB])


@pytest.mark.parametrize(
    "text,problem",
    [
        ("db_password: 12345678\n", "expected a string, got int"),
        ("db_password: yes\n", "expected a string, got bool"),
        ('db_password: "abcdefgh\\nx"\n', "control characters"),
        ("db_password: short\n", "shorter than 8"),
        ("db_pasword: abcdefghij\n", "did you mean 'db_password'"),
        ("[a, b]\n", "expected a mapping"),
        ("db_password: [a\n", "malformed YAML"),
        (f"mattermost_admin_password: {'é' * 40}\n", "longer than 72 bytes"),
    ],
)
def test_malformed_secrets_files_are_bad_input(tmp_path, text, problem):
    path = _write(tmp_path / "s.yml", text)
    with pytest.raises(InventoryError, match=str(path)) as e:
        Secrets(path, Redactor(), [DB, ADMIN])
    assert problem in str(e.value)


def test_a_secrets_file_readable_by_others_is_refused(tmp_path):
    path = _write(tmp_path / "s.yml", "db_password: abcdefghij\n", mode=0o644)
    with pytest.raises(InventoryError, match="chmod 600"):
        Secrets(path, Redactor(), [DB])


def test_environment_values_are_checked_too(tmp_path, monkeypatch):
    monkeypatch.setenv(DB.env, "abc\ndef-ghi")
    with pytest.raises(InventoryError, match=f"{DB.env}: expected a single line"):
        Secrets(tmp_path / "s.yml", Redactor(), [DB])


def test_the_file_is_rewritten_private_and_flushed(tmp_path, monkeypatch):
    path = tmp_path / "s.yml"
    # A stale temp file of a crashed run, readable by all, must not become the secrets file.
    (tmp_path / "s.yml.tmp").write_text("junk")
    (tmp_path / "s.yml.tmp").chmod(0o644)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    s = Secrets(path, Redactor(), [DB, ADMIN])
    s.get(DB)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert synced == [False, True]  # the file, then its directory (the rename)
    s.get(ADMIN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(yaml.safe_load(path.read_text())) == {"db_password", "mattermost_admin_password"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.yml.") and p.name.endswith(".tmp")]


def test_two_runs_generating_at_once_agree(tmp_path):
    """Each generates under the file's lock after re-reading it: both end with one value."""
    path = tmp_path / "s.yml"
    first, second = Secrets(path, Redactor(), [DB, ADMIN]), Secrets(path, Redactor(), [DB, ADMIN])
    values = []
    threads = [threading.Thread(target=lambda s=s: values.append(s.get(DB))) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values[0] == values[1] == yaml.safe_load(path.read_text())["db_password"]
    second.get(ADMIN)  # a later secret keeps the first's
    assert yaml.safe_load(path.read_text())["db_password"] == values[0]


def _option_file_read(line: str) -> str:
    """The value MariaDB's option-file reader (mysys/my_default.c) makes of `key=value`:
    a '#' outside quotes ends the line; surrounding spaces go; one pair of matching
    quotes goes; \\n \\t \\r \\b \\s \\" \\' \\\\ are escapes, any other backslash stays."""
    quote_char, escape, out = "", False, []
    for c in line:  # remove_end_comment
        if c in "'\"" and not escape:
            quote_char = "" if quote_char == c else (quote_char or c)
        if not quote_char and c == "#":
            break
        escape = bool(quote_char) and c == "\\" and not escape
        out.append(c)
    value = "".join(out).split("=", 1)[1].strip(" \t")
    if len(value) > 1 and value[0] in "'\"" and value[0] == value[-1]:
        value = value[1:-1]
    result, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i != len(value) - 1:
            i += 1
            result.append(
                {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "s": " ", '"': '"', "'": "'", "\\": "\\"}.get(
                    value[i], "\\" + value[i]
                )
            )
        else:
            result.append(value[i])
        i += 1
    return "".join(result)


@pytest.mark.parametrize("password", [HOSTILE, "r'e\"p\\l %2F@:# ;$HOME ñ\\", " lead and trail ", "a#b", "x\\"])
def test_option_file_values_read_back_as_given(password):
    assert _option_file_read("password=" + option_file_value(password)) == password


def test_the_old_unquoted_option_file_form_lost_passwords():
    # password=<raw>: a '#' started a comment, surrounding spaces went.
    assert _option_file_read("password=a#b") == "a"
    assert _option_file_read("password= lead and trail ") == "lead and trail"


def test_scram_verifier_matches_rfc7677():
    """RFC 7677's exchange for user 'user', password 'pencil': the ServerSignature made
    from our verifier is the one the RFC shows."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = passwords.scram_verifier("pencil", salt, 4096)
    server_key = base64.b64decode(verifier.rsplit(":", 1)[1])
    auth = (
        "n=user,r=rOprNGfwEbeRWgbNEkqO,"
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    signature = hmac.new(server_key, auth.encode(), hashlib.sha256).digest()
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert passwords.postgres_matches(verifier, "user", "pencil")
    assert not passwords.postgres_matches(verifier, "user", "pencil2")


def test_saslprep_as_postgresql():
    assert passwords.saslprep("abc") == b"abc"
    assert passwords.saslprep("I\u00adX") == b"IX"  # soft hyphen: mapped to nothing
    assert passwords.saslprep("a\u00a0b") == b"a b"  # non-ASCII space
    assert passwords.saslprep("\u2168") == b"IX"  # NFKC
    assert passwords.saslprep("a\u0007b") == "a\u0007b".encode()  # prohibited: used raw


def test_mysql_verifiers():
    assert passwords.native_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    assert passwords.mysql_matches("mysql_native_password", passwords.native_hash(HOSTILE), HOSTILE)
    assert not passwords.mysql_matches("mysql_native_password", passwords.native_hash("x"), HOSTILE)
    salt = "abcdefghijklmnopqrst"
    stored = "$A$005$" + salt + passwords.sha256_crypt(HOSTILE.encode(), salt.encode(), 5000)
    assert passwords.mysql_matches("caching_sha2_password", stored, HOSTILE)
    assert not passwords.mysql_matches("caching_sha2_password", stored, HOSTILE + "x")


def test_sha256_crypt_is_glibcs():
    crypt = pytest.importorskip("crypt", reason="the crypt module (Python < 3.13) is the reference")
    for password in ["hello", HOSTILE, "x" * 80]:
        for salt in ["saltstring", "0123456789abcdef"]:
            expected = crypt.crypt(password, f"$5$rounds=5000${salt}").rsplit("$", 1)[1]
            assert passwords.sha256_crypt(password.encode(), salt.encode()) == expected


def test_a_config_diff_never_shows_mattermosts_secrets():
    """The first DataSource change after a failover: the diff shows the lines around it,
    AtRestEncryptKey among them; those are masked by name, the DataSource's password too."""
    current = {
        "SqlSettings": {
            "AtRestEncryptKey": "generated-by-the-server-abcdef",
            "DataSource": f"postgres://mmuser:{quote(HOSTILE, safe='')}@10.0.0.5:5432/mattermost",
            "DataSourceReplicas": [],
            "DriverName": "postgres",
        },
        "FileSettings": {"PublicLinkSalt": "salt-generated-by-the-server", "Directory": "/x"},
        "PluginSettings": {"Plugins": {"com.example": {"ApiToken": "plugin-token-1234"}}},
    }
    wanted = {
        "SqlSettings": {"DataSource": f"postgres://mmuser:{quote(HOSTILE, safe='')}@10.0.0.6:5432/mattermost"},
        "EmailSettings": {"SMTPPassword": "new-smtp-password"},
    }
    step = JsonSettings("/opt/mattermost/config/config.json", wanted, mask=mm.mask_config)
    probe = file_probe(step.path, "c")
    body = base64.b64encode(json.dumps(current, indent=2).encode()).decode()
    change = step.check({probe: Fact(0, f"regular file|mattermost|mattermost|600|100\nb64:{body}")})
    assert "10.0.0.6:5432" in change.diff and "postgres://mmuser:********@10.0.0.5" in change.diff
    for secret in (
        "generated-by-the-server-abcdef",
        "salt-generated-by-the-server",
        "plugin-token-1234",
        "new-smtp-password",
        *escaped_forms(HOSTILE),
    ):
        assert secret not in change.diff, secret
    assert '"SMTPPassword": "******** (changed)"' in change.diff
    assert '"AtRestEncryptKey": "********"' in change.diff


def test_every_secret_setting_of_mattermosts_model_is_masked():
    config = {}
    for path in mm.SECRET_SETTINGS:
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = "s3cret-" + ".".join(path)
    masked = json.dumps(mm.mask_config(config))
    assert "s3cret-" not in masked
    assert (
        mm.mask_dsn("mmuser:p@ss/w:%41'\"@tcp(10.0.0.5:3306)/mattermost?charset=utf8mb4")
        == "mmuser:********@tcp(10.0.0.5:3306)/mattermost?charset=utf8mb4"
    )


def test_first_admin_keeps_the_password_and_any_hash_off_commands_and_logs(tmp_path):
    step = mm.FirstAdmin("sysadmin", "sysadmin@example.com", HOSTILE)
    (probe,) = step.facts()
    assert HOSTILE not in probe
    assert step.check({probe: Fact(1, "")}).summary.startswith("create")
    salt = "00ff"
    done = Fact(0, f"sysadmin {salt} {mm.fingerprint('sysadmin', HOSTILE, salt)}\n")
    assert step.check({probe: done}) is None
    other = mm.FirstAdmin("sysadmin", "sysadmin@example.com", HOSTILE + "2")  # rotated
    assert "set the password" in other.check({probe: done}).summary

    class Recorder:
        def run(self, script, timeout=0, log_as=None, log_output=True, what=None):
            self.script, self.log_as = script, log_as
            from mmdeploy.remote import Result

            return Result(0, "", "")

    remote = Recorder()
    step.apply(remote, step.check({probe: Fact(1, "")}))
    # The password only inside quoted here-documents (curl's standard input), as JSON.
    assert json.dumps(HOSTILE)[1:-1] in remote.script and "mmctl user change-password" not in remote.script
    for line in remote.script.splitlines():
        if json.dumps(HOSTILE)[1:-1] in line:
            assert line.startswith("{")  # a body line, never an argument
    assert not any(f in remote.log_as for f in escaped_forms(HOSTILE))
    assert "$2b$" not in remote.script and "--hashed" not in remote.script  # no bcrypt hash anywhere


def test_error_messages_are_redacted_on_the_way_out(tmp_path, monkeypatch, capsys):
    """A host's output quoted in an error (here: a password JSON-escaped) never reaches
    the terminal as it is."""
    from invoke import Program

    import tasks
    from mmdeploy import runner

    inventory = tmp_path / "site.yml"
    inventory.write_text(
        "pattern: single\nhosts:\n  - {name: a, address: 127.0.0.1, roles: [proxy, app, jobserver, monitoring, db]}\n"
    )
    secrets = _write(tmp_path / "site.secrets.yml", yaml.safe_dump({"db_password": HOSTILE}, allow_unicode=True))
    assert secrets.exists()

    def fail(*args, **kwargs):
        raise StepFailed(f"psql failed: password {json.dumps(HOSTILE)} rejected (url {quote(HOSTILE, safe='')})")

    monkeypatch.setattr(runner, "run", fail)
    monkeypatch.setattr("mmdeploy.locks.acquire", lambda *a, **k: _NoLock())
    with pytest.raises(SystemExit) as e:
        Program(namespace=tasks.ns).run(["inv", "plan", "--inventory", str(inventory)], exit=True)
    out, err = capsys.readouterr()
    assert e.value.code == 1 and "psql failed" in err
    assert not any(f in out + err for f in escaped_forms(HOSTILE)), err


class _NoLock:
    held: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_redacted_keeps_the_error_type():
    from mmdeploy.errors import redacted

    r = Redactor()
    r.add(HOSTILE)
    e = redacted(InventoryError([f"x {HOSTILE}", "y"]), r)
    assert isinstance(e, InventoryError) and e.problems == [f"x {REDACTED}", "y"] and e.exit_code == 2
    e = redacted(MMDeployError(f"z {shlex.quote(HOSTILE)}"), r)
    assert str(e) == f"z {REDACTED}"


@pytest.mark.parametrize("command,target", [(["failover-db", "--force"], "failover"), (["db.rejoin", "a"], "rejoin")])
def test_failover_and_rejoin_errors_are_redacted_on_the_way_out(tmp_path, monkeypatch, capsys, command, target):
    """failover-db and db.rejoin quote hosts' output in their errors too: masked the same way."""
    from invoke import Program

    import tasks
    from mmdeploy import dbtier

    inventory = tmp_path / "site.yml"
    inventory.write_text(
        "pattern: single\nhosts:\n  - {name: a, address: 127.0.0.1, roles: [proxy, app, jobserver, monitoring, db]}\n"
    )
    _write(tmp_path / "site.secrets.yml", yaml.safe_dump({"db_replication_password": HOSTILE}, allow_unicode=True))

    def fail(*args, **kwargs):
        raise StepFailed(f"primary_conninfo rejected: password={json.dumps(HOSTILE)} ({quote(HOSTILE, safe='')})")

    monkeypatch.setattr(dbtier, target, fail)
    monkeypatch.setattr("mmdeploy.locks.acquire", lambda *a, **k: _NoLock())
    with pytest.raises(SystemExit) as e:
        Program(namespace=tasks.ns).run(["inv", *command, "--inventory", str(inventory)], exit=True)
    out, err = capsys.readouterr()
    assert e.value.code != 0 and "primary_conninfo rejected" in out + err
    assert not any(f in out + err for f in escaped_forms(HOSTILE)), out + err
