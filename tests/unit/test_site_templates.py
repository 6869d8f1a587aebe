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


def _environment(templates: Path, cache: Path):
    import jinja2

    from mmdeploy.component import _CompiledCache

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), bytecode_cache=_CompiledCache.at(cache))


def _compiles(env) -> list[str]:
    """The names of the templates `env` compiles from source from now on."""
    compiled: list[str] = []
    original = env.compile

    def compile(source, name=None, filename=None, *args, **kwargs):
        compiled.append(name)
        return original(source, name, filename, *args, **kwargs)

    env.compile = compile
    return compiled


def test_compiled_templates_are_kept_between_runs_and_compiled_again_when_changed(tmp_path):
    templates, cache = tmp_path / "templates", tmp_path / "cache" / "templates"
    templates.mkdir()
    (templates / "page.j2").write_text("hello {{ name }}\n")
    first = _environment(templates, cache)
    compiled = _compiles(first)
    assert first.get_template("page.j2").render(name="a") == "hello a"
    assert compiled == ["page.j2"] and len(list(cache.glob("*.jinja"))) == 1
    assert cache.stat().st_mode & 0o777 == 0o700

    second = _environment(templates, cache)  # the next run: read from the cache, not compiled
    compiled = _compiles(second)
    assert second.get_template("page.j2").render(name="b") == "hello b" and compiled == []

    (templates / "page.j2").write_text("goodbye {{ name }}\n")  # same file, another source
    third = _environment(templates, cache)
    compiled = _compiles(third)
    assert third.get_template("page.j2").render(name="c") == "goodbye c" and compiled == ["page.j2"]


def test_a_template_cache_that_cannot_be_used_only_costs_the_compilation(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "page.j2").write_text("hello {{ name }}\n")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # others may write there: not used
    assert _environment(templates, shared).bytecode_cache is None
    assert _environment(templates, tmp_path / "templates" / "page.j2" / "x").bytecode_cache is None  # not a directory

    cache = tmp_path / "cache"
    env = _environment(templates, cache)
    env.get_template("page.j2")
    [entry] = cache.glob("*.jinja")
    entry.write_bytes(entry.read_bytes()[:20])  # truncated
    env = _environment(templates, cache)
    compiled = _compiles(env)
    assert env.get_template("page.j2").render(name="a") == "hello a" and compiled == ["page.j2"]

    env = _environment(templates, cache)
    shutil.rmtree(cache)  # gone under the run: nothing is written, the template still renders
    assert env.get_template("page.j2").render(name="b") == "hello b"
