"""Errors the tool reports to its users; each carries the exit code the CLI uses."""


class MMDeployError(Exception):
    exit_code = 1


class InventoryError(MMDeployError):
    """Bad input. Raised before any host is contacted; one problem per line."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StepFailed(MMDeployError):
    """A step's apply (or a fact probe) failed on a host."""
