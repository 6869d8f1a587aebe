"""Vagrant VMs for a pattern: `inv vagrant --pattern P` writes a Vagrantfile for the
pattern's hosts (the hosts of hosts/P.yml: same names and roles) and the inventory that
deploys onto them.

Every VM gets a Debian box, an address on VirtualBox's host-only network
(192.168.56.0/24) and memory sized for its roles; both VirtualBox and libvirt (the
provider Debian's vagrant package brings) are configured. mmdeploy connects as root with
each VM's Vagrant-generated key, so the inventory validates once `vagrant up` has made
the keys. No VM runs on the machines this is built on; `vagrant validate` checks the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import InventoryError
from .inventory import Inventory

NETWORK = "192.168.56"  # VirtualBox's default host-only network
FIRST = 11
BOXES = {"bookworm": "debian/bookworm64", "trixie": "debian/trixie64"}
# MiB per role: what the role's services need on a test VM (OpenSearch runs a 512 MB heap,
# about 740 MB resident; PostgreSQL and Mattermost want room for caches). A host with
# several roles gets the largest plus 512 MiB for each other role.
MEMORY = {
    "proxy": 1024,
    "app": 2048,
    "jobserver": 2048,
    "db": 2048,
    "search": 2048,
    "storage": 1024,
    "pushproxy": 512,
    "monitoring": 1024,
}
EXTRA_ROLE = 512
CPUS = 2


@dataclass
class VM:
    name: str
    address: str
    roles: list[str]
    memory: int


def machines(inventory: Inventory) -> list[VM]:
    vms = []
    if len(inventory.hosts) > 254 - FIRST:
        raise InventoryError([f"{inventory.path}: too many hosts for one /24 host-only network"])
    for i, h in enumerate(inventory.hosts):
        sizes = sorted((MEMORY.get(r, 1024) for r in h.roles), reverse=True)
        vms.append(VM(h.name, f"{NETWORK}.{FIRST + i}", list(h.roles), sizes[0] + EXTRA_ROLE * (len(sizes) - 1)))
    return vms


def vagrantfile(pattern: str, vms: list[VM], box: str, where: str = ".") -> str:
    hosts = "\n".join(
        f'  {{ name: "{vm.name}", ip: "{vm.address}", memory: {vm.memory} }},  # {", ".join(vm.roles)}' for vm in vms
    )
    return f'''# Vagrant VMs for the {pattern} pattern, written by `inv vagrant --pattern {pattern}`:
#   cd {where} && vagrant up
#   inv deploy --inventory {where}/{pattern}.yml
# Names and roles are those of hosts/{pattern}.yml; {pattern}.yml beside this file deploys onto
# these VMs with each one's Vagrant-generated key. Providers: VirtualBox and libvirt.
HOSTS = [
{hosts}
]

Vagrant.configure("2") do |config|
  config.vm.box = "{box}"
  config.vm.synced_folder ".", "/vagrant", disabled: true
  HOSTS.each do |h|
    config.vm.define h[:name] do |host|
      host.vm.hostname = h[:name]
      host.vm.network "private_network", ip: h[:ip]
      host.vm.provider "virtualbox" do |vb|
        vb.memory = h[:memory]
        vb.cpus = {CPUS}
      end
      host.vm.provider "libvirt" do |lv|
        lv.memory = h[:memory]
        lv.cpus = {CPUS}
      end
      # mmdeploy connects as root with the vagrant user's key.
      host.vm.provision "shell", inline: <<~SH
        install -d -m 0700 /root/.ssh
        cp /home/vagrant/.ssh/authorized_keys /root/.ssh/authorized_keys
      SH
    end
  end
end
'''


def inventory_text(inventory: Inventory, vms: list[VM], provider: str = "virtualbox") -> str:
    header = (
        f"# The {inventory.pattern} pattern on the VMs of the Vagrantfile beside this file "
        "(`vagrant up` first),\n"
        f"# written by `inv vagrant --pattern {inventory.pattern}`. Each VM has its own Vagrant-generated key\n"
        f"# (for libvirt, replace virtualbox by libvirt in the key paths).\n"
    )
    document = {
        "pattern": inventory.pattern,
        "ssh": {"user": "root", "strict_host_keys": False},  # VMs are re-created with new host keys
        "settings": {"domain": "mm.vagrant.local"},
        "hosts": [
            {
                "name": vm.name,
                "address": vm.address,
                "roles": vm.roles,
                "ssh": {"key": f".vagrant/machines/{vm.name}/{provider}/private_key"},
            }
            for vm in vms
        ],
    }
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None)


def write(
    inventory: Inventory, directory: Path, distro: str = "bookworm", where: str | None = None
) -> tuple[Path, Path]:
    """Write DIR/Vagrantfile and DIR/<pattern>.yml; returns both paths. `where` is how the
    Vagrantfile's comment names DIR (default: DIR as given)."""
    if distro not in BOXES:
        raise InventoryError([f"--distro: expected one of {', '.join(BOXES)}, got {distro!r}"])
    vms = machines(inventory)
    directory.mkdir(parents=True, exist_ok=True)
    vfile, inv_file = directory / "Vagrantfile", directory / f"{inventory.pattern}.yml"
    vfile.write_text(vagrantfile(inventory.pattern, vms, BOXES[distro], where or str(directory)))
    inv_file.write_text(inventory_text(inventory, vms))
    return vfile, inv_file
