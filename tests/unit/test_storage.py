"""The storage components: where SeaweedFS runs for 1, 2, 3 and 4 storage hosts, the
layouts refused at load (with file, line and key), the rendered units, commands and
secret files, MinIO's unit, environment and host names, and the SigV4 client (checked
against botocore's signer)."""

import json

import pytest

from mmdeploy import balancer, inventory
from mmdeploy.component import Context
from mmdeploy.components.storage import common, minio, s3, seaweedfs
from mmdeploy.errors import InventoryError, MMDeployError
from mmdeploy.facts import Fact
from mmdeploy.ops import Binary, Command, File, Unpacked
from mmdeploy.ops.secretfile import SecretFile
from mmdeploy.registry import registry
from mmdeploy.secrets import Redactor, Secrets

SHA = "a" * 64

MULTI = f"""\
pattern: multi
settings:
  storage: {{sha256: {SHA}}}
hosts:
  - {{name: lb1, address: 192.0.2.1, roles: [proxy]}}
  - {{name: lb2, address: 192.0.2.2, roles: [proxy]}}
  - {{name: app1, address: 192.0.2.11, roles: [app]}}
  - {{name: app2, address: 192.0.2.12, roles: [app]}}
  - {{name: job1, address: 192.0.2.21, private_address: 10.0.0.21, roles: [jobserver, monitoring]}}
  - {{name: db1, address: 192.0.2.31, roles: [db]}}
  - {{name: db2, address: 192.0.2.32, roles: [db]}}
  - {{name: db3, address: 192.0.2.33, roles: [db]}}
  - {{name: search1, address: 192.0.2.51, roles: [search, pushproxy]}}
  - {{name: search2, address: 192.0.2.52, roles: [search, pushproxy]}}
  - {{name: st1, address: 192.0.2.41, private_address: 10.0.0.41, roles: [storage]}}
  - {{name: st2, address: 192.0.2.42, private_address: 10.0.0.42, roles: [storage]}}
"""


def with_storage(text: str, n: int, pattern: str = "multi") -> str:
    """MULTI with n storage hosts (10.0.0.41...) and the given pattern."""
    head = text.split("  - {name: st1")[0].replace("pattern: multi", f"pattern: {pattern}")
    return head + "".join(
        f"  - {{name: st{i}, address: 192.0.2.{40 + i}, private_address: 10.0.0.{40 + i}, roles: [storage]}}\n"
        for i in range(1, n + 1)
    )


class Facts:
    """The facts the storage steps read while being built: the open-files limit."""

    def __init__(self, nofile="20000"):
        self.nofile = nofile

    def get(self, commands):
        return {c: Fact(0, self.nofile) for c in commands}


@pytest.fixture
def load(write_inventory, tmp_path):
    def load(text=MULTI, *overrides):
        return inventory.load(write_inventory(text), overrides)

    return load


def ctx(inv, host, tmp_path, nofile="20000"):
    return Context(
        inv, inv.host(host), Secrets(tmp_path / "s.yml", Redactor(), registry().secrets.values()), Facts(nofile)
    )


def names(hosts):
    return [h.name for h in hosts]


def component(name):
    return registry().component(name)


# --- layouts ---------------------------------------------------------------------------


def test_two_storage_hosts_take_the_job_host_as_third_master_and_volume_server(load):
    inv = load()
    plan = common.seaweed_layout(inv)
    assert names(plan.masters) == ["st1", "st2", "job1"]
    assert names(plan.volumes) == ["st1", "st2", "job1"]
    assert plan.tiebreaker.name == "job1" and plan.replication == "001"
    assert names(component("seaweedfs").hosts(inv)) == ["st1", "st2", "job1"]
    assert names(component("seaweedfs-master").hosts(inv)) == ["st1", "st2", "job1"]
    assert names(component("seaweedfs-volume").hosts(inv)) == ["st1", "st2", "job1"]
    # Filers and S3 gateways (what the balancer spreads clients over) only on storage hosts.
    assert names(component("seaweedfs-filer").hosts(inv)) == ["st1", "st2"]
    assert names(component("seaweedfs-s3").hosts(inv)) == ["st1", "st2"]
    assert component("minio").hosts(inv) == []


def test_one_storage_host_is_a_single_master_without_copies(load):
    inv = load(with_storage(MULTI, 1, "single"))
    plan = common.seaweed_layout(inv)
    assert names(plan.masters) == names(plan.volumes) == ["st1"]
    assert plan.tiebreaker is None and plan.replication == "000"
    args = seaweedfs.command_args("master", inv.host("st1"), inv)
    assert "-peers=none" in args and "-defaultReplication=000" in args


def test_three_and_four_storage_hosts(load):
    inv = load(with_storage(MULTI, 3))
    plan = common.seaweed_layout(inv)
    assert names(plan.masters) == names(plan.volumes) == ["st1", "st2", "st3"]
    assert plan.tiebreaker is None
    inv = load(
        with_storage(MULTI, 4, "cluster").replace(
            "  - {name: job1",
            "  - {name: app3, address: 192.0.2.13, "
            "roles: [app]}\n  - {name: search3, address: 192.0.2.53, "
            "roles: [search]}\n  - {name: job1",
        )
    )
    plan = common.seaweed_layout(inv)
    assert names(plan.masters) == ["st1", "st2", "st3"]  # Raft: an odd number, 3 is SeaweedFS's typical
    assert names(plan.volumes) == ["st1", "st2", "st3", "st4"] and plan.replication == "001"
    assert names(component("seaweedfs-s3").hosts(inv)) == ["st1", "st2", "st3", "st4"]


def test_two_storage_hosts_without_a_third_host_are_refused_with_file_line_and_key(load):
    text = MULTI.replace("roles: [jobserver, monitoring]}", "roles: [app]}").replace(
        "private_address: 10.0.0.41, roles: [storage]",
        "private_address: 10.0.0.41, roles: [storage, jobserver, monitoring]",
    )
    with pytest.raises(InventoryError) as e:
        load(text)
    assert e.value.exit_code == 2
    assert len(e.value.problems) == 1, e.value.problems
    assert (
        "site.yml:15: hosts[10].roles: 2 storage hosts survive the loss of one only with a third" in e.value.problems[0]
    )


def test_replication_that_cannot_survive_a_lost_host_is_refused(load):
    with pytest.raises(InventoryError, match=r"site.yml:3: settings.storage.replication: 000 keeps one copy"):
        load(MULTI.replace("storage: {sha256:", "storage: {replication: '000', sha256:"))
    # Three copies need three live volume servers: with 3, one lost leaves 2.
    with pytest.raises(
        InventoryError, match=r"settings.storage.replication: 002 keeps 3 copies .* with one of the 3 down"
    ):
        load(MULTI.replace("storage: {sha256:", "storage: {replication: '002', sha256:"))
    assert (
        common.seaweed_layout(
            load(with_storage(MULTI.replace("storage: {sha256:", "storage: {replication: '002', sha256:"), 4))
        ).replication
        == "002"
    )
    with pytest.raises(
        InventoryError, match=r"001 keeps 2 copies, on different volume servers; one storage host has one"
    ):
        load(with_storage(MULTI.replace("storage: {sha256:", "storage: {replication: '001', sha256:"), 1, "single"))


def test_minio_needs_four_servers_to_survive_one(load):
    minio_multi = MULTI.replace(
        "storage: {sha256:", "storage: {server: minio, version: RELEASE.2025-09-07T16-13-09Z, sha256:"
    )
    with pytest.raises(
        InventoryError,
        match=r"site.yml:15: hosts\[10\].roles: MinIO keeps taking uploads with one server "
        r"down only from 4 servers",
    ):
        load(minio_multi)
    inv = load(with_storage(minio_multi, 4))
    assert names(component("minio").hosts(inv)) == ["st1", "st2", "st3", "st4"]
    assert component("seaweedfs").hosts(inv) == []
    with pytest.raises(InventoryError, match="settings.storage.replication: is a SeaweedFS setting"):
        load(with_storage(minio_multi.replace("server: minio", "server: minio, replication: '001'"), 4))
    # One MinIO host (the single pattern's one storage node) has nothing to survive.
    load(with_storage(minio_multi, 1, "single"))


def test_unknown_server_and_bad_bucket_names_are_refused(load):
    with pytest.raises(
        InventoryError, match=r"settings.storage.server: expected one of 'seaweedfs' or 'minio', got 'ceph'"
    ):
        load(MULTI.replace("storage: {sha256:", "storage: {server: ceph, sha256:"))
    with pytest.raises(InventoryError, match="settings.storage.bucket"):
        load(MULTI.replace("storage: {sha256:", "storage: {bucket: Not_A_Bucket, sha256:"))


def test_release_needs_its_checksum(load, tmp_path):
    inv = load(MULTI.replace(f"storage: {{sha256: {SHA}}}", "monitoring: {grafana: false}"))
    with pytest.raises(
        MMDeployError,
        match=r"settings.storage.sha256 is required: the SHA-256 of the SeaweedFS release "
        r"archive .* https://github.com/seaweedfs/seaweedfs/releases/download/4.53/linux_amd64.tar.gz",
    ):
        component("seaweedfs").steps(ctx(inv, "st1", tmp_path))
    inv = load(with_storage(MULTI.replace("storage: {sha256:", "storage: {server: minio, sha256:"), 4))
    with pytest.raises(MMDeployError, match="settings.storage.version is required for MinIO"):
        component("minio").steps(ctx(inv, "st1", tmp_path))


# --- SeaweedFS rendering ---------------------------------------------------------------


def test_units_run_the_documented_commands(load, tmp_path):
    inv = load()
    c = ctx(inv, "st1", tmp_path)
    master = seaweedfs.render_unit(c, "master")
    assert "ExecStart=/opt/seaweedfs-releases/4.53/weed \\\n    -logtostderr=true \\\n    master \\\n" in master
    args = seaweedfs.command_args("master", inv.host("st1"), inv)
    assert args[:2] == ["-logtostderr=true", "master"]
    for arg in (
        "-ip=10.0.0.41",
        "-ip.bind=10.0.0.41",
        "-port=9333",
        "-mdir=/var/lib/seaweedfs/master",
        "-peers=10.0.0.41:9333,10.0.0.42:9333,10.0.0.21:9333",
        "-defaultReplication=001",
        "-volumeSizeLimitMB=1024",
        "-telemetry=false",
        "-metricsPort=9324",
        "-whiteList=127.0.0.1,10.0.0.41,10.0.0.42,10.0.0.21",
    ):
        assert arg in args
    assert "User=seaweedfs" in master and "TimeoutStopSec=20" in master
    assert "EnvironmentFile=/etc/seaweedfs/seaweedfs.env" in master
    # The bed's containers allow 20000 open files: more would fail the unit.
    assert "LimitNOFILE=20000" in master
    assert "LimitNOFILE=65536" in seaweedfs.render_unit(ctx(inv, "st1", tmp_path, nofile="1048576"), "volume")
    volume = seaweedfs.command_args("volume", inv.host("job1"), inv)
    for arg in (
        "-ip=10.0.0.21",
        "-port=8080",
        "-dir=/var/lib/seaweedfs/volume",
        "-max=0",
        "-master=10.0.0.41:9333,10.0.0.42:9333,10.0.0.21:9333",
        "-dataCenter=dc1",
        "-rack=rack1",
        "-metricsPort=9325",
    ):
        assert arg in volume
    filer = seaweedfs.command_args("filer", inv.host("st2"), inv)
    for arg in (
        "-ip=10.0.0.42",
        "-port=8888",
        "-defaultStoreDir=/var/lib/seaweedfs/filer",
        "-defaultReplicaPlacement=001",
        "-metricsPort=9326",
    ):
        assert arg in filer
    gateway = seaweedfs.command_args("s3", inv.host("st2"), inv)
    # Its own host's filer first; no Iceberg/Lance listeners, no IAM API.
    for arg in (
        "-ip.bind=10.0.0.42",
        "-port=8333",
        "-filer=10.0.0.42:8888,10.0.0.41:8888",
        "-config=/etc/seaweedfs/s3.json",
        "-port.iceberg=0",
        "-port.lance=0",
        "-iam=false",
        "-metricsPort=9327",
    ):
        assert arg in gateway


def test_settings_change_the_commands(load):
    inv = load(
        MULTI.replace(
            "storage: {sha256:",
            "storage: {port: 9100, data_dir: /srv/s3, max_volumes: 50, volume_size_limit_mb: 4096, sha256:",
        )
    )
    assert "-port=9100" in seaweedfs.command_args("s3", inv.host("st1"), inv)
    assert {"-dir=/srv/s3/volume", "-max=50"} <= set(seaweedfs.command_args("volume", inv.host("st1"), inv))
    assert "-volumeSizeLimitMB=4096" in seaweedfs.command_args("master", inv.host("st1"), inv)
    assert balancer.endpoint(inv, "storage") == ("192.0.2.1", 9100)


def test_steps_per_host(load, tmp_path):
    inv = load()
    base = component("seaweedfs").steps(ctx(inv, "job1", tmp_path))
    (release,) = [s for s in base if isinstance(s, Unpacked)]
    assert release.dest == "/opt/seaweedfs-releases/4.53" and release.strip == 0 and release.artifact.sha256 == SHA
    (env,) = [s for s in base if isinstance(s, SecretFile)]
    assert env.path == "/etc/seaweedfs/seaweedfs.env" and env.mode == "0600"
    lines = env.content.decode().splitlines()
    assert [line.split("=")[0] for line in lines[1:]] == [
        "WEED_JWT_SIGNING_KEY",
        "WEED_JWT_FILER_SIGNING_KEY",
        "WEED_JWT_FILER_SIGNING_READ_KEY",
    ]
    assert all(len(line.split("=", 1)[1]) >= 32 for line in lines[1:])
    master = component("seaweedfs-master").steps(ctx(inv, "job1", tmp_path))
    (toml,) = [s for s in master if isinstance(s, File) and s.path == "/etc/seaweedfs/master.toml"]
    text = toml.content.decode()
    assert "volume.fix.replication -apply" in text and "sleep_minutes = 17" in text
    assert "ec.encode" not in text.replace("(ec.encode", "")  # only named in the comment on why it is left out
    # The bucket and the repair run on the first storage host only.
    first = [s.name for s in component("seaweedfs-s3").steps(ctx(inv, "st1", tmp_path))]
    second = [s.name for s in component("seaweedfs-s3").steps(ctx(inv, "st2", tmp_path))]
    assert "bucket mattermost" in first and "repair files lacking a copy (volume.fix.replication)" in first
    assert not any(n.startswith(("bucket", "repair")) for n in second)


def test_s3_identities_are_a_secret_file(load, tmp_path):
    inv = load()
    c = ctx(inv, "st1", tmp_path)
    (config,) = [s for s in component("seaweedfs-s3").steps(c) if isinstance(s, SecretFile)]
    assert (config.path, config.owner, config.group, config.mode) == (
        "/etc/seaweedfs/s3.json",
        "root",
        "seaweedfs",
        "0640",
    )
    identity = json.loads(config.content)["identities"]
    # Everything on Mattermost's bucket, nothing on any other (SeaweedFS's "Action:bucket").
    assert len(identity) == 1 and identity[0]["actions"] == [
        "Admin:mattermost",
        "Read:mattermost",
        "Write:mattermost",
        "List:mattermost",
        "Tagging:mattermost",
    ]
    assert identity[0]["credentials"] == [
        {"accessKey": c.secrets.get(common.ACCESS_KEY), "secretKey": c.secrets.get(common.SECRET_KEY)}
    ]
    # Compared by hash, never shown in a plan.
    change = config.check({config._probe: Fact(0, "regular file|root|seaweedfs|640|10\nsha:00")})
    assert "secret: content not shown" in change.summary and change.diff == ""


def test_bucket_is_created_through_the_s3_api_with_the_credentials_file(load, tmp_path):
    inv = load()
    steps = common.bucket_steps(inv.settings, inv.host("st1"), seaweedfs.S3_CONFIG)
    (helper,) = [s for s in steps if isinstance(s, File)]
    assert helper.path == "/usr/local/lib/mmdeploy/s3.py"
    (bucket,) = [s for s in steps if isinstance(s, Command)]
    assert bucket.unless == (
        "python3 /usr/local/lib/mmdeploy/s3.py bucket check 10.0.0.41 8333 us-east-1 mattermost /etc/seaweedfs/s3.json"
    )
    assert "bucket create 10.0.0.41 8333 us-east-1 mattermost /etc/seaweedfs/s3.json" in bucket.script


def test_repair_runs_only_when_a_volume_lacks_a_copy(load):
    inv = load()
    plan = common.seaweed_layout(inv)
    step = seaweedfs.repair(plan, inv.host("st1"))
    assert step.unless.startswith('test "$(python3 - http://10.0.0.41:9333/vol/status 3 <<')
    assert "volume.fix.replication -apply" in step.script and step.check({step.unless: Fact(0, "")}) is None


def test_balanced_layer_metrics_and_endpoint(load):
    inv = load()
    layers = {b.name: (b, hosts) for b, hosts in registry().balanced_layers(inv)}
    layer, hosts = layers["storage"]
    assert (layer.port_for(inv.settings), layer.health, layer.clients) == (8333, "/healthz", ("app", "jobserver"))
    assert names(hosts) == ["st1", "st2"]
    assert balancer.endpoint(inv, "storage") == ("192.0.2.1", 8333)  # the first proxy, no floating address
    jobs = dict(registry().scrape_jobs(inv))
    assert {(h.name, m.port_for(h)) for h, m in jobs["seaweedfs-master"]} == {
        ("st1", 9324),
        ("st2", 9324),
        ("job1", 9324),
    }
    assert {h.name for h, _ in jobs["seaweedfs-volume"]} == {"st1", "st2", "job1"}
    assert {(h.name, m.port_for(h)) for h, m in jobs["seaweedfs-s3"]} == {("st1", 9327), ("st2", 9327)}
    assert {h.name for h, _ in jobs["seaweedfs-filer"]} == {"st1", "st2"}


def test_leader_names_carry_the_grpc_port():
    assert seaweedfs._http_address("10.0.0.41:9333.19333") == "10.0.0.41:9333"
    assert seaweedfs._http_address("10.0.0.41:9333") == "10.0.0.41:9333"


# --- MinIO (cannot run here: rendering only) ---------------------------------------------

MINIO4 = with_storage(
    MULTI.replace(
        "storage: {sha256:", "storage: {server: minio, version: RELEASE.2025-09-07T16-13-09Z, minio_drives: 2, sha256:"
    ),
    4,
)


def test_minio_environment_unit_and_host_names(load, tmp_path):
    inv = load(MINIO4)
    c = ctx(inv, "st2", tmp_path)
    steps = component("minio").steps(c)
    (binary,) = [s for s in steps if isinstance(s, Binary)]
    assert binary.path == "/opt/minio-releases/RELEASE.2025-09-07T16-13-09Z/minio"
    assert binary.artifact.url == (
        "https://dl.min.io/server/minio/release/linux-amd64/archive/minio.RELEASE.2025-09-07T16-13-09Z"
    )
    (env,) = [s for s in steps if isinstance(s, SecretFile)]
    assert (env.path, env.group, env.mode) == ("/etc/default/minio", "minio-user", "0640")
    text = env.content.decode()
    assert 'MINIO_VOLUMES="http://mmdeploy-minio{1...4}:9000/var/lib/minio/data{1...2}"' in text
    assert 'MINIO_OPTS="--address 10.0.0.42:9000 --console-address 127.0.0.1:9001"' in text
    assert f'MINIO_ROOT_USER="{c.secrets.get(common.ACCESS_KEY)}"' in text
    assert 'MINIO_PROMETHEUS_AUTH_TYPE="public"' in text and 'MINIO_SITE_REGION="us-east-1"' in text
    (service,) = [s for s in steps if isinstance(s, File) and s.path == "/etc/systemd/system/minio.service"]
    unit = service.content.decode()
    assert "ExecStart=/opt/minio-releases/RELEASE.2025-09-07T16-13-09Z/minio server $MINIO_OPTS $MINIO_VOLUMES" in unit
    assert "User=minio-user" in unit and "EnvironmentFile=/etc/default/minio" in unit
    assert [s.path for s in steps if getattr(s, "path", "").startswith("/var/lib/minio/")] == [
        "/var/lib/minio/data1",
        "/var/lib/minio/data2",
    ]
    assert minio.hosts_block(inv) == "".join(f"10.0.0.4{i} mmdeploy-minio{i} # mmdeploy minio\n" for i in range(1, 5))
    hosts = steps[0]
    assert hosts.name == "MinIO host names in /etc/hosts" and 'cat "$tmp" > /etc/hosts' in hosts.script
    # Only the first server creates the bucket, with the root credentials from its env file.
    assert not any(s.name.startswith("bucket") for s in steps)
    first = component("minio").steps(ctx(inv, "st1", tmp_path))
    (bucket,) = [s for s in first if s.name == "bucket mattermost"]
    assert bucket.unless.endswith("bucket check 10.0.0.41 9000 us-east-1 mattermost /etc/default/minio")


def test_minio_single_host_and_its_declarations(load, tmp_path):
    inv = load(with_storage(MINIO4.replace("minio_drives: 2, ", ""), 1, "single"))
    assert minio.volumes(inv) == "/var/lib/minio/data1"
    inv = load(MINIO4)
    layers = {b.name: (b, hosts) for b, hosts in registry().balanced_layers(inv)}
    layer, hosts = layers["storage"]
    assert (layer.port_for(inv.settings), layer.health) == (9000, "/minio/health/live")
    assert names(hosts) == ["st1", "st2", "st3", "st4"]
    (job,) = [ts for name, ts in registry().scrape_jobs(inv) if name == "minio"]
    assert {(h.name, m.port_for(h), m.path) for h, m in job} == {
        (f"st{i}", 9000, "/minio/v2/metrics/node") for i in range(1, 5)
    }


# --- the S3 client ---------------------------------------------------------------------


def test_sigv4_matches_botocore():
    import datetime
    from unittest import mock

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = datetime.datetime(2026, 11, 29, 12, 0, 0, tzinfo=datetime.timezone.utc)
    body = b"hello world"
    ours = s3.signed_headers(
        "PUT",
        "10.0.0.41:8333",
        "/mattermost/data/a file+x.txt",
        {"partNumber": "1"},
        "us-east-1",
        "AKIDEXAMPLE",
        "secret/key+1",
        s3.hashlib.sha256(body).hexdigest(),
        now,
    )
    request = AWSRequest(
        "PUT",
        "http://10.0.0.41:8333/mattermost/data/a%20file%2Bx.txt?partNumber=1",
        data=body,
        headers={"x-amz-content-sha256": ours["x-amz-content-sha256"]},
    )
    auth = S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key+1"), "s3", "us-east-1")
    with mock.patch("botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)):
        auth.add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]


def test_credentials_from_either_server_config(tmp_path):
    weed = tmp_path / "s3.json"
    weed.write_text(
        json.dumps({"identities": [{"name": "m", "credentials": [{"accessKey": "AK", "secretKey": "SK"}]}]})
    )
    assert s3.read_credentials(str(weed)) == ("AK", "SK")
    env = tmp_path / "minio"
    env.write_text('# Managed\nMINIO_VOLUMES="/d"\nMINIO_ROOT_USER="AK2"\nMINIO_ROOT_PASSWORD="SK2"\n')
    assert s3.read_credentials(str(env)) == ("AK2", "SK2")
    assert s3.main(["bucket", "nope"]) == 2


def _empty_servers(nodes: dict, wanted: int) -> str:
    """Run the balance step's probe here against a fake master's /vol/status."""
    import subprocess

    from .fakehttp import serving

    status = {"Volumes": {"DataCenters": {"dc1": {"rack1": nodes}}}}
    with serving(lambda path: status) as url:
        script = seaweedfs._EMPTY_SERVERS.format(url=f"{url}/vol/status", servers=wanted)
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30).stdout.strip()


def test_volumes_are_balanced_onto_servers_that_joined_a_running_store(load):
    """Growing two storage hosts (and the job host's volume server) into four: the new
    servers hold nothing until volume.balance moves volumes onto them; a store with fewer
    copies than servers has nothing to move (the step would never settle)."""
    inv = load()
    step = seaweedfs.balance(common.seaweed_layout(inv), inv.host("st1"))
    assert "volume.balance -collection ALL_COLLECTIONS -apply" in step.script and "lock" in step.script
    vol = [{"Id": 1}, {"Id": 2}]
    assert _empty_servers({"a:8080": vol, "b:8080": vol, "c:8080": [], "d:8080": None}, 4) == "2"
    assert _empty_servers({"a:8080": vol, "b:8080": vol, "c:8080": [{"Id": 1}], "d:8080": [{"Id": 2}]}, 4) == "0"
    assert _empty_servers({"a:8080": [{"Id": 1}], "b:8080": [{"Id": 1}], "c:8080": []}, 3) == "0"
