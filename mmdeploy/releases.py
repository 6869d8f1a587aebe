"""Mattermost release lines, their support dates, and what they mean for a site.

The table says what Mattermost's own release pages said on TABLE_DATE; each row names the
page. Nothing here reads the clock: every question takes `today`, so plan/deploy/verify pass
the real date and tests pass whatever date they need.

Mattermost calls the monthly, non-ESR releases "feature" (x.0: "major") releases; they are
supported for about three months. Here they are "innovation" releases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

TABLE_DATE = date(2026, 11, 29)  # the day the table below was last checked
NEAR_END = timedelta(days=30)  # warn this long before a line's support ends

# Where the facts come from (Mattermost's pages; the GitHub releases are Mattermost's too).
SERVER_RELEASES = "https://docs.mattermost.com/product-overview/mattermost-server-releases.html"
RELEASE_POLICY = "https://docs.mattermost.com/product-overview/release-policy.html"
UPGRADE_NOTES = "https://docs.mattermost.com/administration-guide/upgrade/important-upgrade-notes.html"
GITHUB_RELEASE = "https://github.com/mattermost/mattermost/releases/tag/v{}"

# v11 removed MySQL; every line up to and including v10 still runs on it.
MYSQL_LAST_MAJOR = 10
MIGRATE_COMMAND = "inv db.migrate --to postgresql"

# Every line before 10.0 had ended by this date (the last, 9.11 ESR, on 2025-05-15),
# per the legacy table of the release policy page.
LEGACY_END = date(2025, 5, 15)


@dataclass(frozen=True)
class KnownBad:
    """Patches of a line that must not be deployed, and why."""

    patches: tuple[str, ...]
    reason: str
    source: str


@dataclass(frozen=True)
class Line:
    """One release series (major.minor) as Mattermost's release pages list it."""

    series: str
    kind: Literal["esr", "innovation"]
    released: date
    support_end: date  # last day of support
    latest: str  # newest patch confirmed on latest_source
    source: str  # page giving released and support_end
    latest_source: str = SERVER_RELEASES
    known_bad: tuple[KnownBad, ...] = ()

    @property
    def mysql(self) -> bool:
        return _parse(self.latest)[0] <= MYSQL_LAST_MAJOR


def _line(series, kind, released, support_end, latest, source=SERVER_RELEASES, **kw) -> Line:
    return Line(series, kind, date.fromisoformat(released), date.fromisoformat(support_end), latest, source, **kw)


_BAD_10_5 = KnownBad(
    ("10.5.0", "10.5.1"),
    "bundles Jira plugin v4.2.0, whose bug may make plugin configuration settings disappear",
    UPGRADE_NOTES,
)
_BAD_11_7 = KnownBad(
    ("11.7.0", "11.7.1", "11.7.2"),
    "database migration-number bug in the roles table when upgrading from 10.11.17 or later (fixed in 11.7.3)",
    UPGRADE_NOTES,
)

# Oldest first. Dates and latest patches: the server releases page as of 2026-08-21, except
# where another page is named (GitHub release pages up to 2026-11-05; 11.11 from the release
# policy's timeline). Lines newer than 11.11 (12.0, 12.1 were tagged on GitHub in Oct/Nov
# 2026) are left out: no Mattermost page available here gives their support dates.
LINES: tuple[Line, ...] = (
    _line("10.0", "innovation", "2024-09-16", "2024-12-15", "10.0.4"),
    _line("10.1", "innovation", "2024-10-16", "2025-01-15", "10.1.7"),
    _line("10.2", "innovation", "2024-11-15", "2025-02-15", "10.2.3"),
    _line("10.3", "innovation", "2024-12-16", "2025-03-15", "10.3.4"),
    _line("10.4", "innovation", "2025-01-16", "2025-04-15", "10.4.5"),
    _line("10.5", "esr", "2025-02-16", "2025-11-15", "10.5.14", known_bad=(_BAD_10_5,)),
    _line("10.6", "innovation", "2025-03-16", "2025-06-15", "10.6.6"),
    _line("10.7", "innovation", "2025-04-16", "2025-07-15", "10.7.4"),
    _line("10.8", "innovation", "2025-05-16", "2025-08-15", "10.8.4"),
    _line("10.9", "innovation", "2025-06-16", "2025-09-15", "10.9.5"),
    _line("10.10", "innovation", "2025-07-16", "2025-10-15", "10.10.3"),
    _line("10.11", "esr", "2025-08-15", "2026-08-15", "10.11.23"),
    _line("10.12", "innovation", "2025-09-16", "2025-12-15", "10.12.4"),
    _line("11.0", "innovation", "2025-10-16", "2026-01-15", "11.0.7"),
    _line("11.1", "innovation", "2025-11-14", "2026-02-15", "11.1.3"),
    _line("11.2", "innovation", "2025-12-16", "2026-03-15", "11.2.4"),
    _line("11.3", "innovation", "2026-01-16", "2026-04-15", "11.3.3"),
    _line("11.4", "innovation", "2026-02-16", "2026-05-15", "11.4.5"),
    _line("11.5", "innovation", "2026-03-16", "2026-06-15", "11.5.7"),
    _line("11.6", "innovation", "2026-04-16", "2026-07-15", "11.6.6"),
    _line(
        "11.7",
        "esr",
        "2026-05-15",
        "2027-05-15",
        "11.7.15",
        latest_source=GITHUB_RELEASE.format("11.7.15"),
        known_bad=(_BAD_11_7,),
    ),
    _line("11.8", "innovation", "2026-06-16", "2026-09-15", "11.8.5"),
    _line("11.9", "innovation", "2026-07-16", "2026-10-15", "11.9.1"),
    _line("11.10", "innovation", "2026-08-14", "2026-11-15", "11.10.5", latest_source=GITHUB_RELEASE.format("11.10.5")),
    _line(
        "11.11",
        "innovation",
        "2026-09-16",
        "2026-12-15",
        "11.11.0",
        source=RELEASE_POLICY,
        latest_source=RELEASE_POLICY,
    ),
)

# What a new site gets: the newest confirmed patch of the current ESR (11.7.15, released
# 2026-11-05 per its GitHub release page).
DEFAULT_VERSION = "11.7.15"


@dataclass(frozen=True)
class Status:
    """What the table says about one version on one day."""

    version: str
    series: str
    line: Line | None  # None: the series is not in the table
    kind: Literal["esr", "innovation"] | None
    support_end: date | None
    supported: bool | None  # None: not known
    days_left: int | None  # days until support_end (negative once past)
    known_bad: str | None  # the reason, when this patch is known bad
    suggested: str | None  # the version to move to (None: nothing better known)
    source: str | None


def _parse(version: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"not a Mattermost version (major.minor.patch): {version!r}")
    return int(m[1]), int(m[2]), int(m[3])


def series_of(version: str) -> str:
    """The series of a version: 11.7.15 -> 11.7."""
    major, minor, _ = _parse(version)
    return f"{major}.{minor}"


def find_line(version: str) -> Line | None:
    """The table row of this version's series, or None."""
    series = series_of(version)
    return next((ln for ln in LINES if ln.series == series), None)


def _bad(line: Line, version: str) -> KnownBad | None:
    return next((b for b in line.known_bad if version in b.patches), None)


def _suggestion(version: str, line: Line | None, today: date) -> str | None:
    # Stay on the line (its newest patch) while it has time left; otherwise move to the
    # newest line with time left, an ESR if there is one, and never to an older version:
    # going back across schema migrations is a downgrade, not an upgrade.
    if line is not None and (line.support_end - today) > NEAR_END and _bad(line, line.latest) is None:
        return line.latest
    ok = [
        ln
        for ln in LINES
        if ln.released <= today and (ln.support_end - today) > NEAR_END and _parse(ln.latest) >= _parse(version)
    ]
    esrs = [ln for ln in ok if ln.kind == "esr"]
    pick = max(esrs or ok, key=lambda ln: ln.released, default=None)
    return pick.latest if pick else None


def lifecycle(version: str, today: date) -> Status:
    """The support status of `version` on `today`, from the table."""
    series = series_of(version)
    line = find_line(version)
    suggested = _suggestion(version, line, today)
    if suggested == version:
        suggested = None
    if line is None:
        if _parse(version)[0] < 10 and today > LEGACY_END:
            # Not in the table, but every pre-10 line is documented as ended by LEGACY_END.
            return Status(version, series, None, None, None, False, None, None, suggested, RELEASE_POLICY)
        return Status(version, series, None, None, None, None, None, None, None, None)
    days_left = (line.support_end - today).days
    bad = _bad(line, version)
    return Status(
        version,
        series,
        line,
        line.kind,
        line.support_end,
        days_left >= 0,
        days_left,
        bad.reason if bad else None,
        suggested,
        bad.source if bad else line.source,
    )


def upgrade_path(version: str, target: str) -> list[str]:
    """The stops from `version` to `target`: the newest patch of every ESR in between, then
    `target`. Mattermost keeps migrations backwards compatible only from the previous ESR,
    so it recommends upgrading one ESR at a time (prepare-to-upgrade-mattermost.html)."""
    start, end = _parse(version), _parse(target)
    ends = (series_of(version), series_of(target))
    stops = [
        ln.latest for ln in LINES if ln.kind == "esr" and ln.series not in ends and start < _parse(ln.latest) < end
    ]
    return stops + [target]


def _label(line: Line) -> str:
    return f"{line.series} {'ESR' if line.kind == 'esr' else 'innovation release'}"


def _suggest(version: str | None, engine: str, current: str) -> str:
    if version is None:
        return f"mmdeploy's release table (checked {TABLE_DATE}) knows no newer supported line: check {SERVER_RELEASES}"
    line = find_line(version)
    text = f"suggested version: {version}"
    if line is not None:
        text += f" ({_label(line)}, supported until {line.support_end})"
    path = upgrade_path(current, version)
    if len(path) > 1:
        text += f", upgrading one ESR at a time: {current} -> {' -> '.join(path)}"
    if engine == "mysql" and _parse(version)[0] > MYSQL_LAST_MAJOR:
        text += f"; it runs on PostgreSQL only, so migrate first: `{MIGRATE_COMMAND}`"
    return text


def warnings(version: str, today: date, engine: str = "postgresql") -> list[str]:
    """Warnings (never errors) for deploying or running `version` on `today`.

    Past support end, a known-bad patch, support ending within NEAR_END, or a series the
    table does not know. Each names the date and the suggested version.
    """
    st = lifecycle(version, today)
    out = []
    if st.line is None:
        if st.supported is False:
            out.append(
                f"Mattermost {version}: every release line before 10.0 is out of support "
                f"(the last one ended on {LEGACY_END}); "
                f"{_suggest(st.suggested, engine, version)} (see {RELEASE_POLICY})"
            )
        else:
            out.append(
                f"Mattermost {version}: series {st.series} is not in mmdeploy's release "
                f"table (checked {TABLE_DATE}), so its support status is unknown; "
                f"check {SERVER_RELEASES}"
            )
        return out
    line = st.line
    if st.known_bad:
        out.append(
            f"Mattermost {version} is a known-bad patch: {st.known_bad}; "
            f"{_suggest(st.suggested, engine, version)} (see {st.source})"
        )
    if not st.supported:
        out.append(
            f"Mattermost {version}: support for the {_label(line)} ended on "
            f"{line.support_end}, it gets no more security fixes; "
            f"{_suggest(st.suggested, engine, version)} (see {line.source})"
        )
    elif st.days_left is not None and st.days_left <= NEAR_END.days:
        out.append(
            f"Mattermost {version}: support for the {_label(line)} ends on "
            f"{line.support_end} (in {st.days_left} days); "
            f"{_suggest(st.suggested, engine, version)} (see {line.source})"
        )
    return out


def summary(version: str, today: date) -> str:
    """One line for `verify`: the running version and its support status."""
    st = lifecycle(version, today)
    if st.line is None:
        state = "out of support" if st.supported is False else "support status unknown"
        return f"Mattermost {version}: {state}"
    head = f"Mattermost {version} ({_label(st.line)})"
    if not st.supported:
        text = f"{head}: out of support since {st.support_end}"
    else:
        text = f"{head}: supported until {st.support_end} ({st.days_left} days left)"
    if st.known_bad:
        text += "; known-bad patch"
    if st.suggested:
        text += f"; suggested {st.suggested}"
    return text


def mysql_problem(version: str) -> str | None:
    """Why `engine: mysql` cannot run `version`, or None when it can (10.x and older)."""
    if _parse(version)[0] <= MYSQL_LAST_MAJOR:
        return None
    last = max((ln for ln in LINES if ln.mysql), key=lambda ln: ln.support_end)
    return (
        f"Mattermost {version} runs on PostgreSQL only (MySQL support ended with v11); "
        f"engine mysql needs an explicit mattermost.version of {last.series}.x or older, "
        f"but {last.series} ESR, the last line that runs on MySQL, is out of support since "
        f"{last.support_end}: migrate the database with `{MIGRATE_COMMAND}`, then use "
        f"{DEFAULT_VERSION}"
    )
