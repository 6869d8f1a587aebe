"""inv vagrant (mmdeploy/vagrant.py): a Vagrantfile for a pattern's hosts and the matching
inventory. `vagrant validate` (Debian's vagrant, installed here when missing) checks the
file for real; no VM runs on these machines."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mmdeploy
from mmdeploy import vagrant

ROOT = Path(__file__).resolve().parents[2]


def example(pattern):
    return mmdeploy.load(ROOT / "hosts" / f"{pattern}.yml")


@pytest.mark.parametrize("pattern", ["single", "multi", "cluster"])
def test_a_vm_per_host_with_memory_per_role(pattern, tmp_path):
    inv = example(pattern)
    vms = vagrant.machines(inv)
    assert [(v.name, v.roles) for v in vms] == [(h.name, list(h.roles)) for h in inv.hosts]
    assert len({v.address for v in vms}) == len(vms) and all(v.address.startswith("192.168.56.") for v in vms)
    by_name = {v.name: v for v in vms}
    assert by_name["db1"].memory == 2048 and by_name["proxy1"].memory == 1024
    assert by_name["job1"].memory == 2048 + 512  # jobserver + monitoring
    vfile, inv_file = vagrant.write(inv, tmp_path / pattern, "trixie")
    text = vfile.read_text()
    assert 'config.vm.box = "debian/trixie64"' in text
    assert all(f'name: "{v.name}", ip: "{v.address}", memory: {v.memory}' in text for v in vms)


def test_the_inventory_validates_once_vagrant_made_the_keys(tmp_path):
    vfile, inv_file = vagrant.write(example("multi"), tmp_path, "bookworm")
    with pytest.raises(mmdeploy.InventoryError, match="SSH key file not found"):
        mmdeploy.load(inv_file)
    for vm in vagrant.machines(example("multi")):  # what `vagrant up` creates
        key = tmp_path / ".vagrant" / "machines" / vm.name / "virtualbox" / "private_key"
        key.parent.mkdir(parents=True)
        key.write_text("stand-in key\n")
    inv = mmdeploy.load(inv_file)
    assert inv.pattern == "multi" and inv.host("db3").address == "192.168.56.18"
    assert inv.host("app1").ssh.key == tmp_path / ".vagrant/machines/app1/virtualbox/private_key"


def test_committed_vagrant_files_are_what_the_generator_writes(tmp_path):
    vfile, inv_file = vagrant.write(example("single"), tmp_path, where="vagrant/single")
    assert (ROOT / "vagrant" / "single" / "Vagrantfile").read_text() == vfile.read_text()
    assert (ROOT / "vagrant" / "single" / "single.yml").read_text() == inv_file.read_text()


def _vagrant() -> str:
    found = shutil.which("vagrant")
    if found:
        return found
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists():
        pytest.skip("vagrant is not installed and only root on Debian can install it (apt-get install vagrant)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "vagrant"], env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "vagrant"], env=env, capture_output=True, check=True)
    return shutil.which("vagrant") or pytest.fail("apt-get installed vagrant but it is not on PATH")


def test_vagrant_validate(tmp_path):
    pattern = "cluster"  # the most VMs (vagrant is slow to start: one pattern)
    binary = _vagrant()
    out = tmp_path / pattern
    p = subprocess.run(
        [sys.executable, "-m", "invoke", "vagrant", "--pattern", pattern, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    ok = subprocess.run([binary, "validate"], cwd=out, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "validated successfully" in ok.stdout, ok.stdout + ok.stderr
    # The check is real: a setting the libvirt provider does not have is refused.
    broken = (out / "Vagrantfile").read_text().replace("lv.cpus = 2", "lv.cpu_count = 2")
    (out / "Vagrantfile").write_text(broken)
    bad = subprocess.run([binary, "validate"], cwd=out, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "cpu_count" in bad.stdout + bad.stderr
