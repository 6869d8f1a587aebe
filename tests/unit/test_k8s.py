"""inv k8s (mmdeploy/k8s.py): the Kubernetes pattern's manifests, validated against the
Mattermost operator's own CRD schema (tests/k8s, vendored from the operator's Go module)
with jsonschema. No Kubernetes runs here: the schema is the check."""

import re
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

import mmdeploy
from mmdeploy import k8s
from mmdeploy.dbtier.component import DB_PASSWORD
from mmdeploy.registry import registry

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "tests" / "k8s" / "installation.mattermost.com_mattermosts.yaml"
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture(scope="module")
def validator():
    crd = yaml.safe_load(CRD.read_text())
    assert crd["spec"]["group"] == "installation.mattermost.com" and crd["spec"]["names"]["kind"] == "Mattermost"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = version["schema"]["openAPIV3Schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def render(pattern, tmp_path, overrides=()):
    inv = mmdeploy.load(ROOT / "hosts" / f"{pattern}.yml", list(overrides))
    # The example's secrets file would land beside it in hosts/: keep it in tmp_path.
    from mmdeploy.secrets import Redactor, Secrets

    secrets = Secrets(tmp_path / "site.secrets.yml", Redactor(), registry().secrets.values())
    return inv, secrets, k8s.manifests(inv, secrets)


@pytest.mark.parametrize("pattern", ["single", "multi", "cluster"])
def test_custom_resource_is_valid_for_the_operator(validator, tmp_path, pattern):
    inv, _, rendered = render(pattern, tmp_path)
    cr = rendered.custom_resource
    errors = sorted(validator.iter_errors(cr), key=str)
    assert not errors, "\n".join(e.message for e in errors)
    spec = cr["spec"]
    assert cr["apiVersion"] == "installation.mattermost.com/v1beta1"
    assert spec["version"] == inv.settings.mattermost.version
    assert spec["replicas"] == len(inv.with_role("app"))
    assert spec["ingress"] == {
        **spec["ingress"],
        "enabled": True,
        "host": inv.settings.domain,
        "ingressClass": "nginx",
        "tlsSecret": "mattermost-tls",
    }


def test_every_referenced_secret_is_rendered_with_the_keys_the_operator_reads(tmp_path):
    inv, secrets, rendered = render("multi", tmp_path)
    by_name = {d["metadata"]["name"]: d for d in rendered.documents["secrets.yaml"]}
    spec = rendered.custom_resource["spec"]
    referenced = {
        spec["database"]["external"]["secret"],
        spec["fileStore"]["external"]["secret"],
        spec["ingress"]["tlsSecret"],
    }
    assert referenced <= set(by_name)
    db = by_name["mattermost-db"]["stringData"]
    password = secrets.get(DB_PASSWORD)
    primary = inv.with_role("db")[0]
    assert db["DB_CONNECTION_STRING"].startswith(f"postgres://mmuser:{password}@{primary.private_address}:5432/")
    assert db["MM_SQLSETTINGS_DATASOURCEREPLICAS"].count("postgres://") == len(inv.with_role("db")) - 1
    s3 = by_name["mattermost-s3"]["stringData"]
    assert s3 == {
        "accesskey": secrets.get(registry().secrets["storage_access_key"]),
        "secretkey": secrets.get(registry().secrets["storage_secret_key"]),
    }
    assert by_name["mattermost-tls"]["type"] == "kubernetes.io/tls"
    assert set(by_name["mattermost-tls"]["stringData"]) == {"tls.crt", "tls.key"}
    # External S3 and search: the storage and search layers outside the cluster, S3 at the
    # internal balancer's floating address (balancer.endpoint), as the hosts reach it.
    assert spec["fileStore"]["external"] == {
        "url": "10.0.0.100:8333",
        "bucket": "mattermost",
        "secret": "mattermost-s3",
    }
    assert spec["elasticSearch"]["host"] == "http://10.0.0.100:9200"  # search too, since it is a balanced layer
    # What the inventory cannot know is a visible placeholder, and listed.
    assert any("tls.crt" in p for p in rendered.placeholders)
    for doc in rendered.documents["secrets.yaml"]:
        assert DNS_1123.match(doc["metadata"]["name"]) and doc["metadata"]["namespace"] == "mattermost"
        assert all(isinstance(v, str) and v for v in doc["stringData"].values())


def test_license_and_mysql(tmp_path):
    license_file = tmp_path / "mattermost.license"
    license_file.write_text("LICENSE-TEXT\n")
    inv, _, rendered = render(
        "single",
        tmp_path,
        [f"mattermost.license_file={license_file}", "database.engine=mysql", "mattermost.version=10.11.23"],
    )
    spec = rendered.custom_resource["spec"]
    assert spec["licenseSecret"] == "mattermost-license"
    secrets = {d["metadata"]["name"]: d["stringData"] for d in rendered.documents["secrets.yaml"]}
    assert secrets["mattermost-license"] == {"license": "LICENSE-TEXT"}
    # The operator tells the engine from the scheme.
    assert secrets["mattermost-db"]["DB_CONNECTION_STRING"].startswith("mysql://mmuser:")


def test_the_schema_check_is_real(validator, tmp_path):
    _, _, rendered = render("single", tmp_path)
    cr = rendered.custom_resource
    bad = {**cr, "spec": {**cr["spec"], "replicas": "two"}}
    assert any("'two' is not of type 'integer'" in e.message for e in validator.iter_errors(bad))
    no_enabled = {**cr, "spec": {**cr["spec"], "ingress": {"host": "x"}}}
    assert any("'enabled' is a required property" in e.message for e in validator.iter_errors(no_enabled))


def test_inv_k8s_writes_the_directory_and_prints_no_secret(tmp_path):
    inventory = tmp_path / "site.yml"
    inventory.write_text((ROOT / "hosts" / "multi.yml").read_text())
    out = tmp_path / "k8s"
    p = subprocess.run(
        [sys.executable, "-m", "invoke", "k8s", "--inventory", str(inventory), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in out.iterdir()) == [
        "kustomization.yaml",
        "mattermost.yaml",
        "namespace.yaml",
        "secrets.yaml",
    ]
    assert stat.S_IMODE((out / "secrets.yaml").stat().st_mode) == 0o600
    password = yaml.safe_load((tmp_path / "site.secrets.yml").read_text())["db_password"]
    assert password in (out / "secrets.yaml").read_text()
    assert password not in p.stdout + p.stderr
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["namespace.yaml", "secrets.yaml", "mattermost.yaml"]
