// TEST STAND-IN for the real server's schema migrations (morph, table
// db_migrations, run under a database lock so app and job servers starting
// together migrate once) and its schema version in the Systems table.
// Reproduced: a newer server migrates on start; an OLDER server refuses to
// start against a schema newer than it knows, with a clear log line — Mattermost
// documents that it does not support a downgrade after a schema-changing
// upgrade (restore the pre-upgrade backup instead). Divergence: the stand-in's
// schema number is derived from the release (major*1000+minor: patch releases
// share a schema, as Mattermost's patch releases normally do) and its DDL is its
// own small table set, not Mattermost's ~150 migrations.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SchemaOf returns the schema number a release knows: major*1000+minor.
func SchemaOf(version string) int64 {
	parts := strings.SplitN(strings.SplitN(version, "-", 2)[0], ".", 3)
	if len(parts) < 2 {
		return 0
	}
	ma, _ := strconv.ParseInt(parts[0], 10, 64)
	mi, _ := strconv.ParseInt(parts[1], 10, 64)
	return ma*1000 + mi
}

// SchemaVersionString is what the real server keeps in Systems.Version and
// reports as ClusterInfo.schema_version: the X.Y.0 of the release.
func SchemaVersionString(version string) string {
	n := SchemaOf(version)
	return fmt.Sprintf("%d.%d.0", n/1000, n%1000)
}

// ErrSchemaTooNew stops the start of a server older than the database schema.
var ErrSchemaTooNew = errors.New("database schema is newer than this server")

type migration struct {
	version int64
	name    string
	run     func(ctx context.Context, s *Store, x *sql.Conn) error
}

func (s *Store) migrations() []migration {
	return []migration{
		{1, "create_base_tables", func(ctx context.Context, s *Store, x *sql.Conn) error {
			for _, d := range s.baseDDL() {
				if _, err := x.ExecContext(ctx, d); err != nil {
					return err
				}
			}
			return nil
		}},
		{2, "create_cluster_discovery_fileinfo_licenses", func(ctx context.Context, s *Store, x *sql.Conn) error {
			for _, d := range []string{
				`CREATE TABLE IF NOT EXISTS ClusterDiscovery (Id VARCHAR(26) PRIMARY KEY, Type VARCHAR(64), ClusterName VARCHAR(64),
					Hostname VARCHAR(512), GossipPort INTEGER, Port INTEGER, CreateAt BIGINT, LastPingAt BIGINT)`,
				`CREATE TABLE IF NOT EXISTS FileInfo (Id VARCHAR(26) PRIMARY KEY, CreatorId VARCHAR(26), PostId VARCHAR(26),
					ChannelId VARCHAR(26), CreateAt BIGINT, UpdateAt BIGINT, DeleteAt BIGINT, Path VARCHAR(512),
					Name VARCHAR(256), Extension VARCHAR(64), Size BIGINT, MimeType VARCHAR(256))`,
				`CREATE TABLE IF NOT EXISTS Licenses (Id VARCHAR(26) PRIMARY KEY, CreateAt BIGINT, Bytes VARCHAR(10000))`,
			} {
				if _, err := x.ExecContext(ctx, d); err != nil {
					return err
				}
			}
			if err := s.addColumn(ctx, x, "Sessions", "DeviceId", "VARCHAR(512) NOT NULL DEFAULT ''"); err != nil {
				return err
			}
			return s.addColumn(ctx, x, "Posts", "FileIds", "VARCHAR(300) NOT NULL DEFAULT '[]'")
		}},
	}
}

// addColumn adds a column unless it exists (Oracle MySQL has no ADD COLUMN IF NOT EXISTS).
func (s *Store) addColumn(ctx context.Context, x *sql.Conn, table, col, typ string) error {
	var n int
	q := `SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND lower(table_name) = lower($1) AND lower(column_name) = lower($2)`
	if s.Driver == "mysql" {
		q = `SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND lower(table_name) = lower(?) AND lower(column_name) = lower(?)`
	}
	if err := x.QueryRowContext(ctx, q, table, col).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := x.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN `+col+` `+typ)
	return err
}

// migrate runs the migrations this release knows, under the migration lock,
// after refusing a schema newer than this release.
func (s *Store) migrate(serverVersion string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := s.db().Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	lock, unlock := `SELECT pg_advisory_lock(7283412)`, `SELECT pg_advisory_unlock(7283412)`
	if s.Driver == "mysql" {
		lock, unlock = `SELECT GET_LOCK('mattermost_migrations', 120)`, `SELECT RELEASE_LOCK('mattermost_migrations')`
	}
	if _, err := conn.ExecContext(ctx, lock); err != nil {
		return fmt.Errorf("taking the migration lock: %w", err)
	}
	defer conn.ExecContext(context.Background(), unlock)
	x := conn
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS db_migrations (Version BIGINT NOT NULL PRIMARY KEY, Name VARCHAR(64) NOT NULL)`); err != nil {
		return mapErr(err)
	}
	var have int64
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(Version), 0) FROM db_migrations`).Scan(&have); err != nil {
		return err
	}
	mine := SchemaOf(serverVersion)
	if have > mine {
		return fmt.Errorf("%w: the database is at schema %s (db_migrations %d) but Mattermost %s knows schema %s at most (%d). "+
			"Mattermost does not support downgrading after a schema-changing upgrade: run the newer release, or restore the database backup taken before the upgrade",
			ErrSchemaTooNew, fmt.Sprintf("%d.%d.0", have/1000, have%1000), have, serverVersion, SchemaVersionString(serverVersion), mine)
	}
	applied := map[int64]bool{}
	rows, err := conn.QueryContext(ctx, `SELECT Version FROM db_migrations`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var v int64
		rows.Scan(&v)
		applied[v] = true
	}
	rows.Close()
	ins := s.q(`INSERT INTO db_migrations (Version, Name) VALUES (?, ?)`)
	for _, m := range s.migrations() {
		if applied[m.version] {
			continue
		}
		if err := m.run(ctx, s, x); err != nil {
			return fmt.Errorf("migration %d %s: %w", m.version, m.name, mapErr(err))
		}
		if _, err := conn.ExecContext(ctx, ins, m.version, m.name); err != nil {
			return mapErr(err)
		}
		s.log("info", "Applied migration", "version", m.version, "name", m.name)
	}
	if !applied[mine] {
		if _, err := conn.ExecContext(ctx, ins, mine, "release_"+SchemaVersionString(serverVersion)); err != nil {
			return mapErr(err)
		}
		if have > 0 {
			s.log("info", "Migrated the database schema", "from", have, "to", mine, "version", serverVersion)
		}
	}
	if err := s.firstRunRows(); err != nil {
		return err
	}
	return s.SaveSystem("Version", SchemaVersionString(serverVersion))
}

// SchemaVersion is Systems.Version (ClusterInfo.schema_version).
func (s *Store) SchemaVersion() string {
	v, _ := s.GetSystem("Version")
	return v
}
