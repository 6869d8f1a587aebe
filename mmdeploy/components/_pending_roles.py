"""TEMPORARY (removed when the search and push proxy components land): the roles
the multi and cluster patterns need whose components are still being written."""

from ..component import Component, Role


class PendingRoles(Component):
    name = "pending-roles"
    owns_roles = (
        Role("search", "search nodes", {"multi": 2, "cluster": 3}),
        Role("pushproxy", "push proxies", {"multi": 2, "cluster": 2}),
    )

    def hosts(self, inventory):
        return []


COMPONENTS = [PendingRoles()]
