"""TEMPORARY (removed when the push proxy component lands): the roles the multi and
cluster patterns need whose components are still being written."""

from ..component import Component, Role


class PendingRoles(Component):
    name = "pending-roles"
    owns_roles = (
        Role("pushproxy", "push proxies", {"multi": 2, "cluster": 2}),
    )

    def hosts(self, inventory):
        return []


COMPONENTS = [PendingRoles()]
