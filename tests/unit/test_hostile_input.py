"""Hostile and malformed input, through the real command line (tasks.py's `inv plan` and
`inv deploy`, run in this process): every case exits 2 with lines naming the file (or the
flag, or the environment variable) at fault, no traceback, and no host contacted.

The inventories name TEST-NET addresses (192.0.2.0/24): nothing is ever sent there,
because Remote.connect and Remote.hold are replaced by a recorder that fails the test if
it is called. A few cases also run as a separate process (`python3 -m invoke ...`), with
hosts on loopback so that even a regression could not send traffic off this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from invoke import Program

import tasks
from mmdeploy.remote import Remote

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
pattern: single
settings:
  domain: chat.example.com
hosts:
  - name: proxy1
    address: 192.0.2.11
    roles: [proxy]
  - name: app1
    address: 192.0.2.12
    roles: [app, jobserver, monitoring]
  - name: db1
    address: 192.0.2.13
    roles: [db]
"""


def with_settings(yaml_settings: str) -> str:
    """BASE with these lines (YAML under `settings:`) added."""
    return BASE.replace("settings:\n", "settings:\n" + textwrap.indent(textwrap.dedent(yaml_settings), "  "))


def host_field(host: int, line: str) -> str:
    """BASE with `line` added to the n-th host."""
    lines = BASE.splitlines(keepends=True)
    idx = [i for i, ln in enumerate(lines) if ln.startswith("  - name:")][host]
    lines.insert(idx + 1, f"    {line}\n")
    return "".join(lines)


def alias_bomb(levels: int) -> str:
    out = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        out.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return BASE.replace(
        "settings:\n", "settings:\n  mattermost:\n    config:\n" + "".join(f"      {line}\n" for line in out)
    )


@dataclass
class Case:
    name: str
    inventory: str | bytes | None = BASE  # None: the path is given by `path`
    args: list[str] = field(default_factory=list)
    expect: str = ""  # a fragment the error must contain
    names: str = "inventory"  # what the error must name: inventory | secrets | --set | --limit | --only | env
    secrets: str | bytes | None = None  # a secrets file written beside the inventory
    secrets_mode: int = 0o600
    env: dict = field(default_factory=dict)
    path: str | None = None  # "dir": the inventory path is a directory
    command: str = "plan"


CASES = [
    # values that would reach a shell, a config file or SQL
    Case(
        "extra_clients with a newline (a pg_hba line)",
        with_settings('database:\n  extra_clients: ["10.0.0.0/24\\nhost all all 0.0.0.0/0 trust"]\n'),
        expect="database.extra_clients",
    ),
    Case(
        "extra_clients with a trailing method",
        with_settings('database:\n  extra_clients: ["0.0.0.0/0 trust"]\n'),
        expect="CIDR",
    ),
    Case(
        "extra_clients network with host bits",
        with_settings('database:\n  extra_clients: ["10.0.0.5/24"]\n'),
        expect="did you mean 10.0.0.0/24",
    ),
    Case(
        "domain with a shell command",
        BASE.replace("chat.example.com", '"chat.example.com; touch pwned"'),
        expect="settings.domain",
    ),
    Case(
        "domain with a newline",
        BASE.replace("chat.example.com", '"chat.example.com\\nserver_name evil"'),
        expect="settings.domain",
    ),
    Case("domain with a space", BASE.replace("chat.example.com", '"chat example.com"'), expect="host name"),
    Case(
        "domain label of 64 characters",
        BASE.replace("chat.example.com", "a" * 64 + ".example.com"),
        expect="settings.domain",
    ),
    Case(
        "domain label starting with a hyphen",
        BASE.replace("chat.example.com", "-chat.example.com"),
        expect="settings.domain",
    ),
    Case("domain given with --set", args=["--set", "domain=x.com;id"], expect="domain", names="--set"),
    Case(
        "kernel parameter name with a command (a file name under /etc/sysctl.d)",
        with_settings("mattermost:\n  ha_sysctl: {'a;touch /pwned': '1'}\n"),
        expect="mattermost.ha_sysctl",
    ),
    Case(
        "kernel parameter value with a newline",
        with_settings('mattermost:\n  ha_sysctl: {net.core.somaxconn: "4096\\nkernel.panic = 1"}\n'),
        expect="kernel parameter value",
    ),
    Case(
        "kernel parameter given with --set",
        args=["--set", "mattermost.ha_sysctl={'x$(id)': '1'}"],
        expect="kernel parameter name",
        names="--set",
    ),
    Case(
        "time server with a chrony directive",
        with_settings("time:\n  servers: ['pool.ntp.org iburst allow 0/0']\n"),
        expect="time.servers",
    ),
    Case("time server with a command", with_settings("time:\n  servers: ['a;id']\n"), expect="host name"),
    Case(
        "push proxy archive URL with a space", with_settings("pushproxy:\n  url: 'ftp://x y'\n"), expect="pushproxy.url"
    ),
    Case(
        "push proxy archive that is not there",
        with_settings("pushproxy:\n  url: /nonexistent/pp.tar.gz\n"),
        expect="pushproxy.url",
    ),
    Case("apt_proxy with a quote", with_settings("apt_proxy: 'http://proxy\"x:3142'\n"), expect="apt_proxy"),
    Case(
        "apt_proxy with a newline", with_settings('apt_proxy: "http://proxy:3142\\nAcquire::x y"\n'), expect="apt_proxy"
    ),
    Case(
        "host address with a command", BASE.replace("192.0.2.11", '"192.0.2.11; rm -rf /"'), expect="hosts[0].address"
    ),
    Case(
        "private_address out of range", host_field(1, "private_address: 10.0.0.300"), expect="hosts[1].private_address"
    ),
    Case(
        "two hosts with one private_address",
        host_field(0, "private_address: 10.0.0.5").replace(
            "    address: 192.0.2.12\n", "    address: 192.0.2.12\n    private_address: 10.0.0.5\n"
        ),
        expect="duplicate private address",
    ),
    Case(
        "private_address of another host's address",
        host_field(1, "private_address: 192.0.2.11"),
        expect="duplicate private address",
    ),
    Case(
        "ssh user with a command",
        BASE.replace("pattern: single\n", "pattern: single\nssh:\n  user: 'root; id'\n"),
        expect="ssh.user",
    ),
    Case(
        "ssh key file missing",
        BASE.replace("pattern: single\n", "pattern: single\nssh:\n  key: nowhere/id_x\n"),
        expect="SSH key file not found",
    ),
    Case(
        "known_hosts file missing",
        BASE.replace("pattern: single\n", "pattern: single\nssh:\n  known_hosts: nowhere/known\n"),
        expect="known_hosts file not found",
    ),
    Case(
        "admin user name with a command",
        with_settings("mattermost:\n  admin_username: 'admin; id'\n"),
        expect="mattermost.admin_username",
    ),
    Case(
        "admin e-mail with a command",
        with_settings("mattermost:\n  admin_email: 'a@b.com; id'\n"),
        expect="mattermost.admin_email",
    ),
    Case("smtp host with a newline", with_settings('smtp:\n  host: "smtp.example.com\\nX: y"\n'), expect="smtp.host"),
    Case(
        "release url with shell quoting",
        with_settings("mattermost:\n  url: \"http://mirror/x'$(id)'.tar.gz\"\n"),
        expect="mattermost.url",
    ),
    Case(
        "a release archive that is a missing local file",
        with_settings("mattermost:\n  url: /nonexistent/mattermost.tar.gz\n  sha256: " + "0" * 64 + "\n"),
        expect="mattermost.url: no such file",
    ),
    Case(
        "license file that does not exist",
        with_settings("mattermost:\n  license_file: /nonexistent/mm.license\n"),
        expect="mattermost.license_file: no such file",
    ),
    Case(
        "tls.cert that does not exist",
        with_settings("tls:\n  mode: provided\n  cert: /nonexistent/c.pem\n  key: /nonexistent/k.pem\n"),
        expect="tls.cert: no such file",
    ),
    Case(
        "tls.key that is a directory",
        with_settings("tls:\n  mode: provided\n  cert: /etc/hostname\n  key: /etc\n"),
        expect="tls.key: not a regular file",
    ),
    Case(
        "nginx.extra closing the server block",
        with_settings("nginx:\n  extra: '} server { listen 81; }'\n"),
        expect="nginx.extra",
    ),
    Case(
        "nginx.extra with an open quote",
        with_settings("nginx:\n  extra: 'add_header X \"y;'\n"),
        expect="quote is not closed",
    ),
    Case(
        "restrict_creation_to_domains with a space",
        with_settings("mattermost:\n  restrict_creation_to_domains: 'a.com,b c.com'\n"),
        expect="not one",
    ),
    Case(
        "dashboard url of another scheme",
        with_settings("monitoring:\n  dashboards: [{id: 1, url: 'ftp://x/y.json'}]\n"),
        expect="monitoring.dashboards[0].url",
    ),
    Case(
        "acme e-mail malformed",
        with_settings("tls:\n  mode: acme\n  acme_email: 'ops at example'\n"),
        expect="tls.acme_email",
    ),
    Case(
        "any settings string with a control character",
        with_settings('demo:\n  message: "hi\\u0007there"\n'),
        expect="control characters",
    ),
    Case(
        "a newline in a --set value",
        args=["--set", 'demo.message="line1\\nline2"'],
        expect="demo.message",
        names="--set",
    ),
    # malformed files
    Case(
        "bytes that are not UTF-8", BASE.encode().replace(b"chat.example.com", b"chat.\xff\xfe.com"), expect="not UTF-8"
    ),
    Case("a path that is a directory", None, path="dir", expect="is a directory"),
    Case("a complex key", BASE + "? [a, b]\n: c\n", expect="expected a plain string key"),
    Case("a numeric key", with_settings("mattermost:\n  1: x\n"), expect="expected a plain string key"),
    Case("a boolean key", with_settings("yes: 1\n"), expect="expected a plain string key"),
    Case("nesting 500 levels deep", BASE + "deep: " + "[" * 500 + "]" * 500 + "\n", expect="nested more than"),
    Case("an alias bomb", alias_bomb(9), expect="aliases that multiply"),
    Case("a recursive alias", BASE + "loop: &l [*l]\n", expect="aliases that multiply"),
    Case("a file over the size limit", BASE + "# " + "x" * (1 << 20) + "\n", expect="larger than"),
    Case("a NUL character", BASE.replace("single", "sin\x00gle"), expect="is not allowed in YAML"),
    Case(
        "a duplicate key", BASE.replace("settings:\n", "settings:\n  domain: a.example.com\n"), expect="duplicate key"
    ),
    Case("two YAML documents", BASE + "---\npattern: multi\n", expect="malformed YAML"),
    Case("an empty file", "", expect="expected a mapping"),
    Case("a list at the top", "- a\n- b\n", expect="expected a mapping"),
    Case("unclosed flow sequence", BASE.replace("roles: [proxy]", "roles: [proxy"), expect="malformed YAML"),
    # malformed flags
    Case(
        "a --set value that is malformed YAML",
        args=["--set", "mattermost.port=[1, 2"],
        expect="malformed YAML",
        names="--set",
    ),
    Case(
        "a --set value that is an alias bomb",
        args=[
            "--set",
            "mattermost.config="
            + "{a: &a [1,1,1,1,1,1,1,1,1,1], "
            + ", ".join(
                f"b{i}: &b{i} [" + ", ".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * 10) + "]" for i in range(8)
            )
            + "}",
        ],
        expect="aliases that multiply",
        names="--set",
    ),
    Case("a --set without '='", args=["--set", "domain"], expect="expected key.path=value", names="--set"),
    Case("a --set of a mapping onto a scalar", args=["--set", "domain.x=1"], expect="domain", names="--set"),
    # secrets
    Case("a malformed secrets file", secrets="db_password: [unclosed\n", expect="malformed YAML", names="secrets"),
    Case("an empty secret value", secrets="db_password:\n", expect="empty value", names="secrets"),
    Case("a secret given as a number", secrets="db_password: 123456789\n", expect="expected a string", names="secrets"),
    Case(
        "an unknown secret name",
        secrets="db_pasword: abcdefghijkl\n",
        expect="did you mean 'db_password'",
        names="secrets",
    ),
    Case(
        "a secret with a newline",
        secrets='db_password: "abcdefgh\\nhost all all 0.0.0.0/0 trust"\n',
        expect="control characters",
        names="secrets",
    ),
    Case("a secret too short to redact", secrets="db_password: abc\n", expect="shorter than", names="secrets"),
    Case(
        "an admin password longer than bcrypt takes",
        secrets=f"mattermost_admin_password: {'x' * 80}\n",
        expect="longer than 72 bytes",
        names="secrets",
    ),
    Case(
        "an S3 access key that breaks a SigV4 credential",
        secrets="storage_access_key: 'AKIA/x y,z'\n",
        expect="must match",
        names="secrets",
    ),
    Case(
        "a secrets file readable by others",
        secrets="db_password: abcdefghijkl\n",
        secrets_mode=0o644,
        expect="chmod 600",
        names="secrets",
    ),
    Case(
        "a secrets file that is not UTF-8",
        secrets=b"db_password: \xff\xfeabcdefgh\n",
        expect="not UTF-8",
        names="secrets",
    ),
    Case("a secrets file that is a list", secrets="- a\n", expect="expected a mapping", names="secrets"),
    Case(
        "a secret in the environment with a newline",
        env={"MMDEPLOY_SECRET_DB_PASSWORD": "abcdefgh\nijkl"},
        expect="control characters",
        names="env",
    ),
    # empty selections
    Case("--limit ''", args=["--limit="], expect="names no host", names="--limit"),
    Case("--limit ','", args=["--limit", ","], expect="names no host", names="--limit"),
    Case("--limit of an unknown host", args=["--limit", "app9"], expect="unknown host", names="--limit"),
    Case("--only ','", args=["--only", ","], expect="no component named", names="--only"),
    Case("--only ''", args=["--only="], expect="no component named", names="--only"),
    Case("deploy --limit ''", args=["--limit=", "--yes"], expect="names no host", names="--limit", command="deploy"),
    Case(
        "deploy --only ','",
        args=["--only", ",", "--yes"],
        expect="no component named",
        names="--only",
        command="deploy",
    ),
]


class Contacted(AssertionError):
    pass


@pytest.fixture
def no_hosts(monkeypatch):
    """Any attempt to reach a host fails the test (and is recorded)."""
    calls = []

    def refuse(self, *args, **kwargs):
        calls.append(self.host.address)
        raise Contacted(f"a host was contacted: {self.host.address}")

    monkeypatch.setattr(Remote, "connect", refuse)
    monkeypatch.setattr(Remote, "hold", refuse, raising=False)
    return calls


def run_cli(argv: list[str]) -> int:
    program = Program(namespace=tasks.ns, version="test")
    try:
        program.run(["inv", *argv], exit=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_refused_before_any_host(case, tmp_path, monkeypatch, capsys, no_hosts):
    monkeypatch.setenv("MMDEPLOY_RUN_DIR", str(tmp_path / "runs"))
    for key in [k for k in os.environ if k.startswith("MMDEPLOY_SECRET_")]:
        monkeypatch.delenv(key)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "site.yml"
    if case.path == "dir":
        path.mkdir()
    else:
        data = case.inventory.encode() if isinstance(case.inventory, str) else case.inventory
        path.write_bytes(data)
    secrets = tmp_path / "site.secrets.yml"
    if case.secrets is not None:
        secrets.write_bytes(case.secrets.encode() if isinstance(case.secrets, str) else case.secrets)
        secrets.chmod(case.secrets_mode)

    code = run_cli([case.command, "--inventory", str(path), *case.args])

    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in out + err
    assert not no_hosts
    assert not (tmp_path / "runs").exists(), "a run was started"
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no message"
    named = {
        "inventory": str(path),
        "secrets": str(secrets),
        "--set": "--set",
        "--limit": "--limit",
        "--only": "--only",
        "env": next(iter(case.env), ""),
    }[case.names]
    assert all(line.startswith(named) for line in lines), err
    assert case.expect in err, err
    if case.names == "secrets":  # the line of the file, where there is one
        assert err.startswith(f"{secrets}:") or "readable by others" in err


# The same refusals from a separate process: the command an operator types. These hosts are
# on loopback, so even a regression that let one through would not leave this machine.
LOOPBACK = BASE.replace("192.0.2.", "127.0.0.")


@pytest.mark.parametrize(
    "inventory,args,expect",
    [
        (LOOPBACK.replace("chat.example.com", '"chat.example.com; touch pwned"'), [], "settings.domain"),
        (LOOPBACK.replace("pattern: single\n", "pattern: single\nx: &a [*a]\n"), [], "aliases that multiply"),
        (LOOPBACK, ["--limit="], "--limit: names no host"),
        (LOOPBACK, ["--only", ","], "--only: no component named"),
        (LOOPBACK, ["--set", "mattermost.port=[1"], "--set mattermost.port"),
    ],
)
def test_refused_by_the_real_command_line(tmp_path, inventory, args, expect):
    path = tmp_path / "site.yml"
    path.write_text(inventory)
    env = {**os.environ, "MMDEPLOY_RUN_DIR": str(tmp_path / "runs")}
    p = subprocess.run(
        [sys.executable, "-m", "invoke", "plan", "--inventory", str(path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert expect in p.stderr and not (tmp_path / "runs").exists()
