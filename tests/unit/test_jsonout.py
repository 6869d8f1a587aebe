"""--json documents (mmdeploy/jsonout.py) validated against their published schema
(mmdeploy/schemas/output.json) with jsonschema: from real runs of the runner (LocalRemote
runs the scripts), real verify results and parsed DB probes."""

import io
import json

import jsonschema
import pytest

from mmdeploy import api, inventory, jsonout, runner
from mmdeploy.components import postgresql as pg
from mmdeploy.dbtier.component import DB_PASSWORD
from mmdeploy.facts import Fact
from mmdeploy.report import Reporter
from mmdeploy.secrets import Redactor, Secrets

from .conftest import SINGLE
from .localremote import LocalRemote
from .test_runner import Files


@pytest.fixture(scope="module")
def validator():
    schema = jsonout.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def roundtrip(document, redact=lambda t: t):
    out = io.StringIO()
    jsonout.dump(document, out, redact)
    return json.loads(out.getvalue())


@pytest.mark.parametrize("mode", ["plan", "apply"])
def test_plan_and_deploy_documents(tmp_path, write_inventory, monkeypatch, validator, mode):
    monkeypatch.setattr(runner, "Remote", lambda host, redact, log_path: LocalRemote(host, redact, log_path))
    inv = inventory.load(write_inventory(SINGLE))
    (tmp_path / "hosts").mkdir()
    redactor = Redactor()
    secrets = Secrets(tmp_path / "site.secrets.yml", redactor)
    report = runner.run(
        inv,
        [Files(tmp_path / "hosts", fail_on=("db1",))],
        mode=mode,
        secrets=secrets,
        reporter=Reporter(redactor, out=io.StringIO()),
        run_root=tmp_path / "runs",
        warnings=["Mattermost 10.5.1 is a known-bad patch"],
    )
    doc = roundtrip(jsonout.run(report, inv), redactor)
    validator.validate(doc)
    assert doc["warnings"] == ["Mattermost 10.5.1 is a known-bad patch"]
    hosts = {h["name"]: h for h in doc["hosts"]}
    if mode == "plan":  # a plan only says the failing command would run
        assert doc["kind"] == "plan" and doc["ok"] is True and hosts["db1"]["error"] is None
    else:
        assert doc["kind"] == "deploy" and doc["ok"] is False
        assert hosts["db1"]["failed"] == 1 and "break" in hosts["db1"]["error"]
    assert doc["changed"] == report.changed > 0
    if mode == "plan":
        assert any("+port=8080" in s["diff"] for s in doc["steps"])
    # A secret in a step never reaches the document: b.conf holds the DB password, which
    # the plan's diff shows to the redactor, never to the reader.
    password = secrets.get(DB_PASSWORD)
    if mode == "plan":
        assert password in json.dumps(jsonout.run(report, inv))  # before dump() redacts it
    assert password not in json.dumps(doc)


def test_verify_document(tmp_path, write_inventory, validator):
    inv = inventory.load(write_inventory(SINGLE))
    results = [
        api.CheckResult("HTTPS ping", True, None, 0.12),
        api.CheckResult("replication", False, "db2 lags", 1.5),
        api.CheckResult("license", True, None, 0.2, "no license: cluster mode inactive", True),
    ]
    doc = roundtrip(jsonout.verify(results, inv))
    validator.validate(doc)
    assert doc["ok"] is False and doc["checks"][1] == {
        "name": "replication",
        "ok": False,
        "problem": "db2 lags",
        "seconds": 1.5,
        "detail": None,
        "warning": False,
    }
    assert doc["checks"][2]["detail"] == "no license: cluster mode inactive" and doc["checks"][2]["warning"] is True


def test_db_status_document(write_inventory, validator):
    inv = inventory.load(write_inventory(SINGLE))
    primary = pg.parse_probe(
        inv.host("db1"),
        Fact(0, "recovery=false\nread_only=off\nlsn=16/B374D848\nreplica=db2,10.0.0.15,streaming,quorum,16/B374D848\n"),
    )
    doc = roundtrip(jsonout.db_status([primary], inv))
    validator.validate(doc)
    (node,) = doc["nodes"]
    assert (node["role"], node["writable"], node["received"]) == ("primary", True, "16/B374D848")
    assert doc["ok"] is True


def test_schema_refuses_what_it_does_not_describe(write_inventory, validator):
    inv = inventory.load(write_inventory(SINGLE))
    doc = jsonout.verify([], inv)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**doc, "checks": [{"name": "x", "ok": "yes", "problem": None, "seconds": 0}]})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**doc, "kind": "destroy"})


def test_drift_document(write_inventory, validator):
    from mmdeploy import driftcheck

    inv = inventory.load(write_inventory(SINGLE))
    facts = {
        "app1": driftcheck._parse("version=11.7.15\nconfig=3f2a\nplugin=com.mattermost.calls\nactive=active\n"),
        "app2": driftcheck._parse("version=11.7.14\nconfig=3f2a\nplugin=com.mattermost.calls\nactive=active\n"),
        "app3": driftcheck._parse("version=11.7.15\nconfig=3f2a\nactive=active\n"),
        "proxy1": {**driftcheck._parse("server=10.0.0.12:8065 max_fails=0\n"), "certificate": None},
    }
    report = driftcheck.DriftReport(facts=facts)
    driftcheck.compare("app", "release", {h: facts[h]["version"] for h in ("app1", "app2", "app3")}, report.differences)
    doc = roundtrip(jsonout.drift(report, inv))
    validator.validate(doc)
    assert doc["kind"] == "drift" and doc["ok"] is False
    assert doc["differences"] == [
        {"host": "app2", "group": "app", "what": "release", "value": "11.7.14", "expected": "11.7.15"}
    ]
    assert doc["hosts"]["app1"]["plugin"] == ["com.mattermost.calls"] and "certificate" not in doc["hosts"]["proxy1"]
    assert roundtrip(jsonout.drift(driftcheck.DriftReport(), inv))["ok"] is True
