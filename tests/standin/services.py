"""Throw-away local services for the stand-in's tests, on loopback only.

PrivatePostgres: a PostgreSQL instance of its own (initdb in a temporary directory, a free
port on 127.0.0.1, unix socket in that directory), so the tests need no PostgreSQL set up by
hand and cannot disturb one that is. Debian's server binaries are used; when they are missing
and we are root (CI on a fresh Debian 12), `apt-get install postgresql` brings them.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def ensure_postgres_binaries() -> tuple[Path | None, str]:
    """(bin dir, why not) — installs Debian's postgresql when root and missing."""
    b = _pg_bin()
    if b:
        return b, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "PostgreSQL server binaries are not installed (apt-get install postgresql) and we are not root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(
        ["apt-get", "install", "-y", "-q", "postgresql"], env=env, capture_output=True, text=True, timeout=600
    )
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        r = subprocess.run(
            ["apt-get", "install", "-y", "-q", "postgresql"], env=env, capture_output=True, text=True, timeout=600
        )
    b = _pg_bin()
    return (b, "") if b else (None, "apt-get install postgresql failed: " + r.stderr[-300:])


class PrivatePostgres:
    """One PostgreSQL server for a test session; `database()` makes a fresh database."""

    USER, PASSWORD = "mmuser", "mostest"

    def __init__(self):
        b, why = ensure_postgres_binaries()
        if b is None:
            raise RuntimeError(why)
        # Not under pytest's 0700 tmp dir: the postgres user must reach it.
        root = Path(tempfile.mkdtemp(prefix="mmstandin-pg-"))
        self.bin, self.root, self.port = b, root, free_port()
        self.data = root / "data"
        self.run_as = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.run_as = "postgres"
            pwd.getpwnam("postgres")
            root.chmod(0o755)
            shutil.chown(root, "postgres", "postgres")
        self._cmd(
            [str(b / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
        )
        log = root / "pg.log"
        self._cmd(
            [
                str(b / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "start",
                "-o",
                f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c fsync=off",
            ]
        )
        self.psql(f"CREATE ROLE {self.USER} LOGIN SUPERUSER PASSWORD '{self.PASSWORD}'")

    def _cmd(self, args):
        if self.run_as:
            args = ["runuser", "-u", self.run_as, "--", *args]
        subprocess.run(args, check=True, capture_output=True, timeout=120)

    def psql(self, sql: str, db: str = "postgres") -> str:
        args = [
            str(self.bin / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            db,
            "-tAc",
            sql,
        ]
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return r.stdout.strip()

    def database(self) -> str:
        """A new empty database; returns its DSN (Mattermost's postgres:// form)."""
        name = "mm_" + secrets.token_hex(4)
        self.psql(f"CREATE DATABASE {name} OWNER {self.USER}")
        return f"postgres://{self.USER}:{self.PASSWORD}@127.0.0.1:{self.port}/{name}?sslmode=disable&connect_timeout=5"

    def stop(self):
        try:
            self._cmd([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        except subprocess.SubprocessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def wait_port(port: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


S3PROXY = "org.gaul:s3proxy:4.1.0:jar:jar-with-dependencies"


class S3Proxy:
    """s3proxy (Apache-2.0, from Maven Central) on a loopback port with a filesystem
    backend and SigV4 credentials: an S3 server for the stand-in's amazons3 driver."""

    ACCESS, SECRET = "standinaccess", "standinsecret0123456789"

    def __init__(self, cache: Path):
        jar = cache / "s3proxy-4.1.0-jar-with-dependencies.jar"
        if not jar.exists():
            if not (shutil.which("mvn") and shutil.which("java")):
                raise RuntimeError("mvn and java are needed to fetch s3proxy from Maven Central")
            cache.mkdir(parents=True, exist_ok=True)
            r = subprocess.run(
                ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={S3PROXY}", f"-DoutputDirectory={cache}"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if r.returncode != 0 or not jar.exists():
                raise RuntimeError("mvn dependency:copy s3proxy failed: " + (r.stdout + r.stderr)[-300:])
        self.root = Path(tempfile.mkdtemp(prefix="mmstandin-s3-"))
        (self.root / "data").mkdir()
        self.port = free_port()
        props = self.root / "s3proxy.conf"
        props.write_text(f"""s3proxy.endpoint=http://127.0.0.1:{self.port}
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity={self.ACCESS}
s3proxy.credential={self.SECRET}
jclouds.provider=filesystem
jclouds.filesystem.basedir={self.root / "data"}
""")
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-jar", str(jar), "--properties", str(props)],
            stdout=(self.root / "s3proxy.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        if not wait_port(self.port, 60):
            self.stop()
            raise RuntimeError("s3proxy did not start")

    def objects(self, bucket: str) -> list[Path]:
        return [p for p in (self.root / "data" / bucket).rglob("*") if p.is_file()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


OPENSEARCH = "org.opensearch.distribution.integ-test-zip:opensearch:2.19.6:zip"


class OpenSearch:
    """A single-node OpenSearch 2.19.6 (Apache-2.0; the integ-test-zip from Maven Central,
    core modules only) on a loopback port, run by an unprivileged user (it refuses root)."""

    def __init__(self, cache: Path):
        z = cache / "opensearch-2.19.6.zip"
        if not z.exists():
            if not (shutil.which("mvn") and shutil.which("java")):
                raise RuntimeError("mvn and java are needed to fetch OpenSearch from Maven Central")
            cache.mkdir(parents=True, exist_ok=True)
            r = subprocess.run(
                ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={OPENSEARCH}", f"-DoutputDirectory={cache}"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if r.returncode != 0 or not z.exists():
                raise RuntimeError("mvn dependency:copy opensearch failed: " + (r.stdout + r.stderr)[-300:])
        self.root = Path(tempfile.mkdtemp(prefix="mmstandin-os-"))
        self.root.chmod(0o755)
        subprocess.run(["python3", "-m", "zipfile", "-e", str(z), str(self.root)], check=True, timeout=120)
        home = self.root / "opensearch-2.19.6"
        for p in (home / "bin").iterdir():
            p.chmod(0o755)
        self.port, tport = free_port(), free_port()
        (home / "config" / "opensearch.yml").write_text(
            f"network.host: 127.0.0.1\nhttp.port: {self.port}\ntransport.port: {tport}\n"
            "discovery.type: single-node\npath.data: data\npath.logs: logs\n"
        )
        user = None
        if os.geteuid() == 0:
            user = "nobody"
            subprocess.run(["chown", "-R", f"{user}:", str(self.root)], check=True)
        java_home = str(Path(os.path.realpath(shutil.which("java"))).parents[1])
        env = dict(
            os.environ, OPENSEARCH_JAVA_OPTS="-Xms256m -Xmx256m", JAVA_HOME=java_home, OPENSEARCH_JAVA_HOME=java_home
        )
        cmd = [str(home / "bin" / "opensearch")]
        if user:
            cmd = [
                "runuser",
                "-u",
                user,
                "--",
                "env",
                f"JAVA_HOME={java_home}",
                f"OPENSEARCH_JAVA_HOME={java_home}",
                "OPENSEARCH_JAVA_OPTS=-Xms256m -Xmx256m",
                *cmd,
            ]
        self.proc = subprocess.Popen(
            cmd, cwd=home, env=env, stdout=(self.root / "os.out").open("w"), stderr=subprocess.STDOUT
        )
        if not wait_port(self.port, 120):
            out = (self.root / "os.out").read_text()[-500:]
            self.stop()
            raise RuntimeError("OpenSearch did not start: " + out)
        self.url = f"http://127.0.0.1:{self.port}"
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    self.url + "/_cluster/health?wait_for_status=yellow&timeout=5s", timeout=10
                ) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("OpenSearch did not become ready")
                time.sleep(0.5)

    def get(self, path: str):
        import json
        import urllib.request

        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)
