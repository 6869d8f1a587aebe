"""The release-lifecycle table and the warnings derived from it.

Every call passes `today` explicitly: no assertion here depends on the real date.
"""

from datetime import date, timedelta

import pytest

from mmdeploy import releases as r

TODAY = date(2026, 11, 29)  # the issue's "today"


def _v(version):
    return tuple(int(p) for p in version.split("."))


# --- the table itself -------------------------------------------------------------------


def test_table_is_ordered_and_every_row_is_sourced():
    assert len(r.LINES) >= 20
    for older, newer in zip(r.LINES, r.LINES[1:]):
        assert older.released < newer.released, (older.series, newer.series)
        assert _v(older.series) < _v(newer.series)
    seen = set()
    for line in r.LINES:
        assert line.series not in seen
        seen.add(line.series)
        assert line.released < line.support_end, line.series
        assert line.kind in ("esr", "innovation")
        for url in (line.source, line.latest_source):
            assert url.startswith(
                ("https://docs.mattermost.com/", "https://github.com/mattermost/mattermost/releases/")
            ), url
        assert r.series_of(line.latest) == line.series
        for bad in line.known_bad:
            assert bad.reason and bad.source.startswith("https://docs.mattermost.com/")
            assert all(r.series_of(p) == line.series for p in bad.patches)
            assert line.latest not in bad.patches  # the newest patch is never the bad one


def test_support_windows_match_the_release_policy():
    # Feature releases: about three months; ESRs: nine (10.5) or twelve (10.11 on) months.
    for line in r.LINES:
        months = (line.support_end - line.released).days / 30.4
        if line.kind == "innovation":
            assert 2.5 < months < 3.5, line.series
        else:
            assert 8.5 < months < 12.5, line.series


def test_issue_facts_are_in_the_table():
    old, esr = r.find_line("10.11.0"), r.find_line("11.7.0")
    assert (old.kind, old.support_end) == ("esr", date(2026, 8, 15))
    assert _v(old.latest) >= (10, 11, 19)  # "10.11 had reached .19 by May 2026"
    assert (esr.kind, esr.support_end) == ("esr", date(2027, 5, 15))
    assert set(esr.known_bad[0].patches) == {"11.7.0", "11.7.1", "11.7.2"}


def test_table_date_is_after_the_last_mysql_line_ended():
    # mysql_problem says "out of support since"; true for any run after the table's date.
    assert r.find_line("10.11.0").support_end < r.TABLE_DATE


# --- DEFAULT_VERSION --------------------------------------------------------------------


def test_default_version_is_supported_today_and_not_known_bad():
    st = r.lifecycle(r.DEFAULT_VERSION, TODAY)
    assert st.kind == "esr" and st.supported is True
    assert st.known_bad is None
    assert _v(r.DEFAULT_VERSION) >= (11, 7, 3)
    assert r.DEFAULT_VERSION == r.find_line(r.DEFAULT_VERSION).latest
    assert r.warnings(r.DEFAULT_VERSION, TODAY) == []
    assert r.mysql_problem(r.DEFAULT_VERSION) is not None  # v11: PostgreSQL only


def test_current_esr_is_clean():
    for version in ("11.7.3", "11.7.9", "11.7.15"):
        st = r.lifecycle(version, TODAY)
        assert (st.supported, st.known_bad, st.days_left) == (True, None, 167)
        assert r.warnings(version, TODAY) == []
    assert r.lifecycle("11.7.9", TODAY).suggested == "11.7.15"  # newer patch, no warning
    assert r.lifecycle("11.7.15", TODAY).suggested is None


# --- warnings ---------------------------------------------------------------------------


def test_past_support_10_11_4():
    st = r.lifecycle("10.11.4", TODAY)
    assert (st.supported, st.support_end, st.suggested) == (False, date(2026, 8, 15), "11.7.15")
    [w] = r.warnings("10.11.4", TODAY)
    assert "ended on 2026-08-15" in w
    assert "suggested version: 11.7.15" in w and "supported until 2027-05-15" in w
    assert r.SERVER_RELEASES in w
    assert "db.migrate" not in w  # PostgreSQL site: nothing to migrate


def test_past_support_on_mysql_points_to_the_migration():
    [w] = r.warnings("10.11.4", TODAY, engine="mysql")
    assert "ended on 2026-08-15" in w and "`inv db.migrate --to postgresql`" in w


def test_the_day_support_ends_is_still_supported():
    end = date(2026, 8, 15)
    assert r.lifecycle("10.11.23", end).supported is True
    assert r.lifecycle("10.11.23", end + timedelta(days=1)).supported is False


@pytest.mark.parametrize("version", ["11.7.0", "11.7.1", "11.7.2"])
def test_known_bad_patch(version):
    st = r.lifecycle(version, TODAY)
    assert st.supported is True and "10.11.17" in st.known_bad
    assert st.source == r.UPGRADE_NOTES
    [w] = r.warnings(version, TODAY)
    assert f"{version} is a known-bad patch" in w
    assert "roles table" in w and "suggested version: 11.7.15" in w


def test_known_bad_and_past_support_both_warn():
    ws = r.warnings("10.5.0", TODAY)
    assert len(ws) == 2
    assert "known-bad" in ws[0] and "Jira" in ws[0]
    assert "ended on 2025-11-15" in ws[1]


def test_innovation_release_nearing_its_end():
    # 11.11 ends 2026-12-15: 16 days after the issue's today, and no newer line is known,
    # so the warning says so instead of suggesting a downgrade to 11.7.
    st = r.lifecycle("11.11.0", TODAY)
    assert (st.kind, st.supported, st.days_left, st.suggested) == ("innovation", True, 16, None)
    [w] = r.warnings("11.11.0", TODAY)
    assert "ends on 2026-12-15 (in 16 days)" in w and "knows no newer supported line" in w
    assert "11.7.15" not in w


def test_innovation_release_nearing_its_end_suggests_the_esr():
    # 11.6 ends 2026-07-15; on 2026-06-20 the 11.7 ESR is out and newer.
    [w] = r.warnings("11.6.2", date(2026, 6, 20))
    assert "ends on 2026-07-15 (in 25 days)" in w
    assert "suggested version: 11.7.15 (11.7 ESR, supported until 2027-05-15)" in w


def test_innovation_with_no_newer_esr_suggests_a_newer_innovation_release():
    # 11.8 ends 2026-09-15; on 2026-08-20 the only ESR with time left (11.7) is older.
    st = r.lifecycle("11.8.5", date(2026, 8, 20))
    assert st.suggested == "11.10.5"


def test_near_end_window_is_thirty_days():
    end = date(2026, 12, 15)
    assert r.warnings("11.11.0", end - timedelta(days=30))
    assert r.warnings("11.11.0", end - timedelta(days=31)) == []


def test_esr_nearing_its_end_warns_too():
    [w] = r.warnings("11.7.15", date(2027, 5, 1))
    assert "ends on 2027-05-15 (in 14 days)" in w


def test_never_suggests_a_downgrade():
    for line in r.LINES:
        for today in (date(2025, 6, 1), TODAY, date(2027, 6, 1)):
            st = r.lifecycle(line.latest, today)
            if st.suggested:
                assert _v(st.suggested) >= _v(line.latest), (line.series, today)


# --- versions the table does not know ---------------------------------------------------


@pytest.mark.parametrize("version", ["12.0.2", "11.12.0", "13.1.0"])
def test_unknown_newer_series_warns_without_failing(version):
    st = r.lifecycle(version, TODAY)
    assert st.line is None and st.supported is None and st.suggested is None
    [w] = r.warnings(version, TODAY)
    assert "support status is unknown" in w and str(r.TABLE_DATE) in w
    assert r.summary(version, TODAY).endswith("support status unknown")


def test_pre_10_versions_are_out_of_support_after_the_last_legacy_line_ended():
    st = r.lifecycle("9.11.5", TODAY)
    assert st.supported is False and st.suggested == "11.7.15"
    [w] = r.warnings("9.11.5", TODAY)
    assert "before 10.0 is out of support" in w and "2025-05-15" in w
    assert "9.11.5 -> 10.5.14 -> 10.11.23 -> 11.7.15" in w


def test_pre_10_versions_before_that_date_are_unknown():
    assert r.lifecycle("9.11.5", date(2025, 1, 1)).supported is None


def test_a_patch_newer_than_the_table_knows_takes_its_series_status():
    st = r.lifecycle("11.7.99", TODAY)
    assert st.supported is True and r.warnings("11.7.99", TODAY) == []


@pytest.mark.parametrize("bad", ["11.7", "v11.7.15", "11.7.15-rc1", ""])
def test_malformed_version_is_refused(bad):
    with pytest.raises(ValueError):
        r.lifecycle(bad, TODAY)


# --- upgrade path -----------------------------------------------------------------------


def test_upgrade_path_steps_through_each_esr():
    assert r.upgrade_path("10.11.4", "11.7.15") == ["11.7.15"]
    assert r.upgrade_path("10.6.3", "11.7.15") == ["10.11.23", "11.7.15"]
    assert r.upgrade_path("10.5.0", "11.7.15") == ["10.11.23", "11.7.15"]
    assert r.upgrade_path("11.7.1", "11.7.15") == ["11.7.15"]


# --- MySQL ------------------------------------------------------------------------------


def test_mysql_needs_10_x_and_names_the_migration():
    msg = r.mysql_problem("11.7.15")
    assert "PostgreSQL only" in msg and "10.11.x or older" in msg
    assert "out of support since 2026-08-15" in msg
    assert "`inv db.migrate --to postgresql`" in msg and r.DEFAULT_VERSION in msg
    assert r.mysql_problem("12.0.2") is not None
    for version in ("10.11.23", "10.11.4", "10.5.14", "9.11.5"):
        assert r.mysql_problem(version) is None


# --- verify's line ----------------------------------------------------------------------


def test_summary_for_verify():
    assert r.summary("11.7.15", TODAY) == "Mattermost 11.7.15 (11.7 ESR): supported until 2027-05-15 (167 days left)"
    assert (
        r.summary("10.11.4", TODAY)
        == "Mattermost 10.11.4 (10.11 ESR): out of support since 2026-08-15; suggested 11.7.15"
    )
    assert "known-bad patch" in r.summary("11.7.1", TODAY)
