"""Plan and apply: hosts in parallel, components in dependency order, handlers once per host
after the component's steps. Plan puts a barrier between components; apply runs a pipeline
per host (_Pipelines), waiting for other hosts only where a component needs them.

`plan` runs every check and never applies. `apply` is the only writer. A host that fails
stops its own later steps; the other hosts go on.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import pending
from .component import Component, Context, cross_host, ordered
from .errors import InventoryError, MMDeployError
from .facts import HOST_FACTS, Fact, FactCache
from .inventory import Host, Inventory
from .ops.apt import fetch_ahead_script
from .remote import Remote
from .report import Reporter, StepResult
from .secrets import Secrets
from .step import Change, Step

# A host's steps and handlers for one component.
Built = tuple[list[Step], dict[str, Step]]


@dataclass
class HostRun:
    host: Host
    remote: Remote
    facts: FactCache
    ok: int = 0
    changed: int = 0
    failed: int = 0
    error: str | None = None
    seconds: float = 0.0
    # (component, start, end) on the monotonic clock, in the order the host ran them
    timeline: list[tuple[str, float, float]] = field(default_factory=list)
    # Packages whose download a pipelined run started ahead on the host (_Pipelines)
    fetched_ahead: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.error is None


@dataclass
class RunReport:
    mode: str
    hosts: dict[str, HostRun]
    results: list[StepResult] = field(default_factory=list)
    log_dir: Path | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # printed before the steps

    @property
    def failed(self) -> bool:
        return any(not h.alive for h in self.hosts.values())

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    @property
    def round_trips(self) -> dict[str, int]:
        return {name: h.remote.round_trips for name, h in self.hosts.items()}


def select_hosts(inventory: Inventory, limit: list[str] | None) -> list[Host]:
    """All hosts when `limit` is None; a limit naming no host (--limit "") is refused,
    never read as "all"."""
    if limit is None:
        return list(inventory.hosts)
    names = {h.name for h in inventory.hosts}
    if not limit:
        raise InventoryError([f"--limit: names no host (hosts: {', '.join(sorted(names))})"])
    unknown = [n for n in limit if n not in names]
    if unknown:
        raise InventoryError(
            [f"--limit: unknown host {', '.join(map(repr, unknown))} (hosts: {', '.join(sorted(names))})"]
        )
    return [h for h in inventory.hosts if h.name in limit]


def run(
    inventory: Inventory,
    components: list[Component],
    *,
    mode: str,
    secrets: Secrets,
    reporter: Reporter,
    limit: list[str] | None = None,
    run_root: Path | None = None,
    shared: dict[str, object] | None = None,
    warnings: list[str] | tuple[str, ...] = (),
    connections: dict[str, Remote] | None = None,
    pipelined: bool = True,
) -> RunReport:
    """`pipelined` (apply only): each host goes through the components at its own pace,
    waiting for other hosts only where a component needs them (_Pipelines); False puts a
    barrier between components, as plan always does. `shared` gives a component's
    ctx.shared instead of its prepare() (a re-point after a failover passes the topology
    the failover decided). `warnings` are printed first.
    `connections`: open connections to use (the run lock's, one SSH handshake per host
    instead of two), left open for their owner to close."""
    if mode not in ("plan", "apply"):
        raise ValueError(mode)
    started = time.monotonic()
    hosts = select_hosts(inventory, limit)
    log_dir = run_dir(mode, run_root)
    reporter.open_log(log_dir / "output.log")
    reporter.width = max([12, *(len(h.name) for h in hosts)])
    runs: dict[str, HostRun] = {}
    lent = connections or {}
    for h in hosts:
        remote = lent.get(h.name) or Remote(h, secrets.redact, log_dir / f"{h.name}.log")
        if h.name in lent and remote.log_path is None:
            remote.log_path = log_dir / f"{h.name}.log"
        runs[h.name] = HostRun(h, remote, FactCache(remote))
    report = RunReport(mode, runs, log_dir=log_dir, warnings=list(warnings))
    for warning in report.warnings:
        reporter.print(f"warning: {warning}")

    with ThreadPoolExecutor(max_workers=min(32, len(runs))) as pool:
        list(pool.map(lambda r: _connect(r, reporter, proven=r.host.name in lent), runs.values()))
        unreachable = {name: r.failed for name, r in runs.items()}  # failed to connect: changed nothing
        view = _View(runs, secrets, log_dir)
        order = ordered(components)
        members = {c.name: {h.name for h in c.hosts(inventory)} for c in order}
        fetching = mode == "apply" and pipelined
        ahead = _Prefetch(inventory, secrets, runs, view, shared or {}, order, pool, members, fetching)

        def apply(r: HostRun, c: Component, prepared: object, built: Built | None, member: bool) -> list[StepResult]:
            """One host's part of a component, timed: the host's own work, not its waits."""
            t0 = time.monotonic()
            try:
                return _run_component(r, c, inventory, secrets, reporter, mode, prepared, built, member=member)
            finally:
                r.seconds += time.monotonic() - t0
                r.timeline.append((c.name, t0, time.monotonic()))

        if mode == "apply" and pipelined:
            pipelines = _Pipelines(order, members, runs, unreachable, ahead, report, reporter)
            alive = [r for r in runs.values() if r.alive]
            with ThreadPoolExecutor(max_workers=max(1, len(alive))) as each_host:  # one thread per pipeline
                futures = [each_host.submit(pipelines.run_host, r, apply) for r in alive]
                try:
                    for f in futures:
                        f.result()
                except BaseException:  # Ctrl-C: no host starts another component
                    pipelines.stop.set()
                    raise
            report.results.extend(pipelines.results(list(runs)))
        else:
            _with_barriers(order, members, runs, unreachable, ahead, pool, report, reporter, mode, apply)
        view.close()
        for name, r in runs.items():
            if name not in lent:
                r.remote.close()
    report.seconds = time.monotonic() - started
    reporter.summary(report)
    for warning in report.warnings[len(warnings) :]:  # found on the hosts: again, where it is read
        reporter.print(f"warning: {warning}")
    return report


def _with_barriers(
    order: list[Component],
    members: dict[str, set[str]],
    runs: dict[str, HostRun],
    unreachable: dict[str, int],
    ahead: _Prefetch,
    pool: ThreadPoolExecutor,
    report: RunReport,
    reporter: Reporter,
    mode: str,
    apply: Callable[..., list[StepResult]],
) -> None:
    """Every host finishes a component before any starts the next (plan, and apply when
    not pipelined). `apply(run, component, prepared, built, member)` runs one host's part."""
    for component in order:
        targets = [r for r in runs.values() if r.alive and r.host.name in members[component.name]]
        if component.retires():  # the other hosts, where it may have left a server running
            targets += [r for r in runs.values() if r.alive and r.host.name not in members[component.name]]
        if not targets:
            continue
        if mode == "apply" and any(r.changed or r.failed > unreachable[n] for n, r in runs.items()):
            ahead.drop()
        try:
            prepared = ahead.prepared(component)
        except MMDeployError as e:
            for r in targets:
                report.results.append(_fail(r, component.name, "(prepare)", str(e), reporter))
            continue
        _found_warnings(component, prepared, report, reporter)
        for results in pool.map(
            lambda r: apply(r, component, prepared, ahead.built(r, component), r.host.name in members[component.name]),
            targets,
        ):
            report.results.extend(results)


def _found_warnings(component: Component, prepared: object, report: RunReport, reporter: Reporter) -> None:
    """What the component's prepare() found on the hosts that the operator must read
    (Component.found_warnings): printed once when found, and again in the summary."""
    for warning in component.found_warnings(prepared):
        if warning not in report.warnings:
            report.warnings.append(warning)
            reporter.print(f"warning: {warning}")


def _connect(run: HostRun, reporter: Reporter, proven: bool = False) -> None:
    """`proven`: the connection already ran a script (the run lock's): the host facts come
    with the host's first batch of facts instead of a round trip of their own."""
    t0 = time.monotonic()
    try:
        run.remote.connect()
        if not proven:
            run.facts.get(HOST_FACTS.values())  # also proves the shell (and sudo) work
    except MMDeployError as e:
        run.error = str(e)
        run.failed += 1
        reporter.host_failed(run.host.name, str(e))
    run.seconds += time.monotonic() - t0


def _run_component(
    run: HostRun,
    component: Component,
    inventory: Inventory,
    secrets: Secrets,
    reporter: Reporter,
    mode: str,
    shared: object = None,
    built: Built | None = None,
    member: bool = True,
) -> list[StepResult]:
    """`built`: the host's steps and handlers for this component, built ahead (_Prefetch).
    A host that is not one of the component's (`member` false) runs its retire() steps."""
    results: list[StepResult] = []
    host = run.host.name

    def record(
        step_name: str, status: str, change: Change | None = None, error: str = "", seconds: float = 0.0
    ) -> None:
        result = StepResult(
            host,
            component.name,
            step_name,
            status,
            change.summary if change else "",
            change.diff if change else "",
            error,
            seconds,
        )
        results.append(result)
        setattr(run, status, getattr(run, status) + 1)
        reporter.step(result, mode)

    def fail(step_name: str, error: str) -> None:
        results.append(_fail(run, component.name, step_name, error, reporter))

    try:
        if built is None:
            built = _build(component, Context(inventory, run.host, secrets, run.facts, shared), member)
        steps, handlers = built
    except MMDeployError as e:
        fail("(building steps)", str(e))
        return results
    except Exception as e:  # a bug in a component must not take the other hosts down
        _log_traceback(run)
        fail("(building steps)", f"{type(e).__name__}: {e}")
        return results

    notified: list[str] = []
    facts = {}
    stale = True
    recorded: list[str] = []  # handlers an interrupted run left pending (pending.py)
    for i, step in enumerate(steps):
        try:
            if stale:  # one round trip for the facts of every step still to check
                extra = [pending.FACT] if i == 0 and handlers else []
                facts = run.facts.get([*extra, *(f for s in steps[i:] for f in s.facts())])
                if extra:
                    recorded = pending.recorded(facts[pending.FACT], host, component.name, handlers)
                    notified += recorded
                stale = False
            change = step.check(facts)
        except MMDeployError as e:
            fail(step.name, str(e))
            return results
        except Exception as e:
            _log_traceback(run)
            fail(step.name, f"check crashed: {type(e).__name__}: {e}")
            return results
        if change is None:
            record(step.name, "ok")
            continue
        notified += [n for n in step.notify if n not in notified]
        if mode == "plan":
            record(step.name, "changed", change)
            continue
        reporter.applying(host, component.name, step.name, change.summary)
        s0 = time.monotonic()
        try:
            todo = tuple(n for n in step.notify if n in handlers and n not in recorded)
            if todo:  # recorded before the change: a run killed after it still restarts
                pending.record(run.remote, component.name, todo)
                recorded += todo
            step.apply(run.remote, change)
        except MMDeployError as e:
            fail(step.name, str(e))
            return results
        finally:
            run.facts.invalidate()
            stale = True
        record(step.name, "changed", change, seconds=time.monotonic() - s0)

    for name, handler in handlers.items():  # in the order the component declares them
        if name not in notified:
            continue
        label = f"handler {name}"
        if mode == "plan":
            record(label, "changed", Change("run (notified)"))
            continue
        reporter.applying(host, component.name, label, "run")
        s0 = time.monotonic()
        try:
            handler.apply(run.remote, Change("run"))
        except MMDeployError as e:
            fail(label, str(e))
            return results
        record(label, "changed", Change("run"), seconds=time.monotonic() - s0)
    if mode == "apply" and recorded:
        try:
            pending.clear(run.remote, component.name, recorded)
        except MMDeployError as e:
            fail("(pending handlers)", str(e))
            return results
    unknown = set(notified) - set(handlers)
    if unknown:
        fail("(handlers)", f"steps notify unknown handlers: {', '.join(sorted(unknown))}")
    return results


def _build(component: Component, ctx: Context, member: bool) -> Built:
    if member:
        return component.steps(ctx), component.handlers(ctx)
    return component.retire(ctx), {}


class _Prefetch:
    """Every fact of the run read up front, one round trip per host (as pyinfra gathers its
    facts before it executes): each component prepared and each host's steps built on the
    hosts as they are now, then every step's facts read at once, on all hosts in parallel.
    While nothing has changed, each component uses what was prepared and built here and its
    checks read from the cache, so a no-op run (and any plan) costs one round trip per host
    instead of one per component. A change on one host can change what another host reads
    (a replica follows its new primary), so the first change anywhere drops all of it: later
    components prepare, build and read again, as without it. Only reads; a component this
    cannot prepare or build ahead is done at its turn (and fails there if it must)."""

    def __init__(
        self,
        inventory: Inventory,
        secrets: Secrets,
        runs: dict[str, HostRun],
        view: _View,
        shared: dict[str, object],
        order: list[Component],
        pool: ThreadPoolExecutor,
        members: dict[str, set[str]],
        fetching: bool = False,
    ):
        self.inventory, self.runs, self.view, self.given = inventory, runs, view, shared
        self.live = True
        self._prepared: dict[str, object] = {}
        self._built: dict[tuple[str, str], Built] = {}
        # (host, component): a component that places nothing on the host and whose retire
        # steps there found nothing to do, as the host was before the run (_Pipelines).
        self.nothing_to_retire: set[tuple[str, str]] = set()
        # host -> [(index in order, what its steps there will download)] (`fetching`: a
        # pipelined apply, which starts these downloads ahead, Step.downloads).
        self.downloads: dict[str, list[tuple[int, list[str]]]] = {}

        # What steps() will read while building: one round trip per host (none when the run
        # lock brought the host facts and no component reads more).
        def early(run: HostRun) -> None:
            wanted = [f for c in order if run.host.name in members[c.name] for f in c.build_facts(run.host)]
            try:
                run.facts.get([*HOST_FACTS.values(), *wanted])
            except Exception:  # noqa: BLE001 - read again where they are needed, which reports it
                pass

        list(pool.map(early, [r for r in runs.values() if r.alive]))

        # One after the other: several read the same nodes (the DB topology), from the cache.
        # A component that retires servers elsewhere is built on every host, even with no
        # host of its own this run: its checks there are read in the same round trip.
        for component in order:
            if component.retires() or any(runs[h.name].alive for h in component.hosts(inventory) if h.name in runs):
                try:
                    self._prepared[component.name] = self.prepare_now(component)
                except Exception:  # noqa: BLE001 - prepared again at its turn, which reports it
                    pass

        def build(run: HostRun) -> None:
            needed: list[str] = []
            retiring: list[tuple[str, list[Step]]] = []  # built here by retire(): no member of it
            downloading: list[tuple[int, list[Step]]] = []  # steps that download (Step.downloads)
            for i, component in enumerate(order):
                member = run.host.name in members[component.name]
                if component.name not in self._prepared or not (member or component.retires()):
                    continue
                try:
                    ctx = Context(inventory, run.host, secrets, run.facts, self._prepared[component.name])
                    steps, handlers = _build(component, ctx, member)
                except Exception:  # noqa: BLE001 - built again at its turn, which reports it
                    continue
                self._built[run.host.name, component.name] = steps, handlers
                retiring += [] if member else [(component.name, steps)]
                fetches = [s for s in steps if type(s).downloads is not Step.downloads]
                downloading += [(i, fetches)] if fetching and member and fetches else []
                needed += [pending.FACT] if handlers else []
                needed += [f for s in steps for f in s.facts()]
            try:
                facts = run.facts.get(needed)
            except Exception:  # noqa: BLE001 - read again by the component's own checks, which report it
                return
            for name, steps in retiring:
                try:
                    if all(step.check(facts) is None for step in steps):
                        self.nothing_to_retire.add((run.host.name, name))
                except Exception:  # noqa: BLE001 - checked again at its turn, which reports it
                    pass
            for i, steps in downloading:
                wanted: list[str] = []
                for step in steps:
                    try:
                        change = step.check(facts)
                    except Exception:  # noqa: BLE001 - checked again at its turn, which reports it
                        continue
                    wanted += [p for p in step.downloads(change) if p not in wanted] if change else []
                if wanted:
                    self.downloads.setdefault(run.host.name, []).append((i, wanted))

        list(pool.map(build, [r for r in runs.values() if r.alive]))

    def prepare_now(self, component: Component) -> object:
        given = self.given.get(component.name)
        return given if given is not None else component.prepare(self.inventory, self.view)

    def prepared(self, component: Component) -> object:
        if component.name in self._prepared:
            return self._prepared[component.name]
        return self.prepare_now(component)

    def built(self, run: HostRun, component: Component) -> Built | None:
        return self._built.pop((run.host.name, component.name), None)

    def drop(self) -> None:
        if self.live:
            self.live = False
            self._prepared.clear()
            self._built.clear()
            for run in self.runs.values():
                run.facts.invalidate()


class _Pipelines:
    """Apply with a pipeline per host (issue #14): each host goes through the run's order
    without waiting for the others, except where a component needs them. A component
    starts on a host once

    - every component it waits for (component.cross_host: its `after`, and the firewall)
      has finished on all of that component's hosts, and
    - all of its own hosts have come to it (unless it is not `together`): the members of a
      cluster start it together, as under a barrier. A component that retires servers
      elsewhere starts with every host that has something to retire; a host with nothing
      to retire (as it was before the run) goes through its checks without waiting for
      the others and is not waited for.

    Once a host has run the component that sets up apt (base), the packages its later
    components will install are fetched ahead there, in the background (ops.apt).

    A host that fails is waited for no more; the others go on, as under the barrier. The
    first change anywhere makes every later component prepare again and each host read
    its facts again (_Prefetch's rule, per host). Results come back in the barrier's order
    (component, then host), so the report reads the same whatever the timing."""

    def __init__(
        self,
        order: list[Component],
        members: dict[str, set[str]],
        runs: dict[str, HostRun],
        unreachable: dict[str, int],
        ahead: _Prefetch,
        report: RunReport,
        reporter: Reporter,
    ):
        self.order, self.runs, self.unreachable, self.ahead = order, runs, unreachable, ahead
        self.report, self.reporter = report, reporter
        self.index = {c.name: i for i, c in enumerate(order)}
        waits = cross_host(order)
        self.waits = [sorted(self.index[d] for d in waits[c.name]) for c in order]
        self.targets = [
            {n for n in runs if n in members[c.name] or (c.retires() and (n, c.name) not in ahead.nothing_to_retire)}
            for c in order
        ]
        self.members = members
        # Where each host starts fetching its later packages ahead: after the component that
        # sets up apt, or at once when the run has none (its proxy file is already there).
        self.fetch_after = next((i for i, c in enumerate(order) if c.sets_up_apt), -1)
        # How many components of `order` each host is past; one that could not be reached runs
        # no pipeline and is waited for no more, like a host that failed.
        self.past = {name: 0 if r.alive else len(order) for name, r in runs.items()}
        self.done = threading.Condition()
        self.stop = threading.Event()
        self._prepare_lock = threading.Lock()
        self._prepared: dict[str, tuple[object, MMDeployError | None, bool]] = {}
        self._stale: set[str] = set()  # hosts whose facts were read again after the first change
        self._results: dict[tuple[int, str], list[StepResult]] = {}

    def _ready(self, i: int, host: str) -> bool:
        together = self.order[i].together and host in self.targets[i]
        if together and any(self.past[h] < i for h in self.targets[i]):
            return False
        return all(self.past[h] > j for j in self.waits[i] for h in self.targets[j])

    def _passed(self, host: str, count: int) -> None:
        with self.done:
            self.past[host] = count
            self.done.notify_all()

    def _changed(self) -> bool:
        return any(r.changed or r.failed > self.unreachable[n] for n, r in self.runs.items())

    def _prepare(self, component: Component) -> tuple[object, MMDeployError | None, bool]:
        """Once per component, when its first host starts it: (prepared, error, ahead),
        `ahead` when it is the one prepared before anything changed."""
        with self._prepare_lock:
            if component.name not in self._prepared:
                ahead = not self._changed()
                try:
                    value = self.ahead.prepared(component) if ahead else self.ahead.prepare_now(component)
                    self._prepared[component.name] = value, None, ahead
                    _found_warnings(component, value, self.report, self.reporter)
                except MMDeployError as e:
                    self._prepared[component.name] = None, e, ahead
            return self._prepared[component.name]

    def run_host(self, run: HostRun, apply: Callable[..., list[StepResult]]) -> None:
        name = run.host.name
        try:
            if self.fetch_after < 0:
                self._fetch_ahead(run, -1)
            for i, component in enumerate(self.order):
                if not run.alive or self.stop.is_set():
                    break
                member = name in self.members[component.name]
                if member or component.retires():
                    with self.done:
                        while not self._ready(i, name):
                            self.done.wait(1.0)
                            if self.stop.is_set():
                                return
                    self._results[i, name] = self._component(run, component, member, apply)
                self._passed(name, i + 1)
                if i == self.fetch_after and run.alive:
                    self._fetch_ahead(run, i)
        finally:
            self._passed(name, len(self.order))  # waited for no more

    def _fetch_ahead(self, run: HostRun, after: int) -> None:
        """Start the download of what the host's components after `after` will install,
        but the next one's, whose install starts at once; best effort: a package not
        fetched here is fetched by its install."""
        name = run.host.name
        mine = (i for i in range(after + 1, len(self.order)) if name in self.members[self.order[i].name])
        following = next(mine, len(self.order))  # the host's next component
        groups, seen = [], set()  # each package in the first component that installs it
        for i, wanted in self.ahead.downloads.get(name, []):
            group = [p for p in wanted if p not in seen] if i > following else []
            groups += [group] if group else []
            seen.update(group)
        if not groups:
            return
        try:
            result = run.remote.run(fetch_ahead_script(groups), timeout=30, what="fetch ahead")
        except MMDeployError:
            return
        if result.ok:
            run.fetched_ahead = [p for group in groups for p in group]
            count = f"{len(run.fetched_ahead)} package{'s' if len(run.fetched_ahead) > 1 else ''}"
            self.reporter.note(run.host.name, f"fetching {count} ahead: {' '.join(run.fetched_ahead)}")

    def _component(
        self, run: HostRun, component: Component, member: bool, apply: Callable[..., list[StepResult]]
    ) -> list[StepResult]:
        prepared, error, ahead = self._prepare(component)
        if error is not None:
            return [_fail(run, component.name, "(prepare)", str(error), self.reporter)]
        built = None
        if run.host.name not in self._stale and self._changed():
            self._stale.add(run.host.name)
            run.facts.invalidate()
        elif ahead and run.host.name not in self._stale:
            built = self.ahead.built(run, component)
        return apply(run, component, prepared, built, member)

    def results(self, hosts: list[str]) -> list[StepResult]:
        return [r for i in range(len(self.order)) for h in hosts for r in self._results.get((i, h), [])]


class _View:
    """ClusterView for prepare(): the run's own connections, or extra read-only ones for
    hosts outside --limit."""

    def __init__(self, runs: dict[str, HostRun], secrets: Secrets, log_dir: Path):
        self.runs, self.secrets, self.log_dir = runs, secrets, log_dir
        self.extra: dict[str, FactCache] = {}
        self._lock = threading.Lock()  # prepares run in parallel

    def facts(self, host: Host, commands: list[str]) -> dict[str, Fact]:
        if host.name in self.runs and self.runs[host.name].alive:
            return self.runs[host.name].facts.get(commands)
        with self._lock:
            if host.name not in self.extra:
                self.extra[host.name] = FactCache(Remote(host, self.secrets.redact, self.log_dir / f"{host.name}.log"))
        return self.extra[host.name].get(commands)

    def close(self) -> None:
        for cache in self.extra.values():
            cache.remote.close()


def _fail(run: HostRun, component: str, step: str, error: str, reporter: Reporter) -> StepResult:
    run.error = f"{component} / {step}: {error}"
    run.failed += 1
    result = StepResult(run.host.name, component, step, "failed", error=error)
    reporter.step(result, "apply")
    return result


def run_dir(mode: str, root: Path | None = None) -> Path:
    """A new directory for one run's logs: $MMDEPLOY_RUN_DIR (default .mmdeploy/runs)/<time>-<mode>-<pid>."""
    root = root or Path(os.environ.get("MMDEPLOY_RUN_DIR", ".mmdeploy/runs"))
    path = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{mode}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _log_traceback(run: HostRun) -> None:
    if run.remote.log_path:
        with open(run.remote.log_path, "a") as f:
            f.write(run.remote.redact(traceback.format_exc()))
