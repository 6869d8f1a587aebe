"""Site templates: a file in templates/<component>/ beside the inventory's hosts/ folder
replaces the built-in template, and plan says which one a file came from."""

import shutil
from pathlib import Path

from mmdeploy import inventory
from mmdeploy.component import Context, render
from mmdeploy.facts import Fact
from mmdeploy.registry import registry
from mmdeploy.secrets import Redactor, Secrets

from .conftest import SINGLE

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "templates" / "examples" / "demo" / "index.html.j2"


def site(tmp_path, with_override: bool):
    (tmp_path / "hosts").mkdir()
    path = tmp_path / "hosts" / "site.yml"
    path.write_text(SINGLE)
    if with_override:
        (tmp_path / "templates" / "demo").mkdir(parents=True)
        shutil.copy(EXAMPLE, tmp_path / "templates" / "demo" / "index.html.j2")
    return inventory.load(path, ["demo.enabled=true"])


def page_step(inv, tmp_path):
    ctx = Context(inv, inv.hosts[0], Secrets(tmp_path / "s.yml", Redactor()), None)
    return next(s for s in registry().component("demo").steps(ctx) if s.name.endswith("index.html"))


def test_built_in_template_without_override(tmp_path):
    inv = site(tmp_path, with_override=False)
    text = render(inv, "demo/index.html.j2", host=inv.hosts[0], settings=inv.hosts[0].settings)
    assert text.origin == "built-in template demo/index.html.j2" and "Example Corp." not in text


def test_site_template_replaces_the_built_in_and_plan_says_so(tmp_path):
    inv = site(tmp_path, with_override=True)
    step = page_step(inv, tmp_path)
    assert b"Example Corp. internal service" in step.content
    change = step.check({step.facts()[0]: Fact(0, "")})  # the file does not exist yet
    assert change.summary == f"create (from the site template {tmp_path / 'templates' / 'demo' / 'index.html.j2'})"
    assert "+<p style" in change.diff


def test_the_worked_example_is_inactive_in_the_project(tmp_path):
    # templates/examples/ matches no template name: the project's own inventories are unaffected.
    inv = inventory.load(ROOT / "hosts" / "single.yml", ["demo.enabled=true"])
    text = render(inv, "demo/index.html.j2", host=inv.hosts[0], settings=inv.hosts[0].settings)
    assert text.origin.startswith("built-in")
