// TEST STAND-IN for the real Mattermost server's SQL store (used because the
// Mattermost release cannot be downloaded on the test machines and the server
// is AGPL). Reproduced boundaries: the postgres (lib/pq) and mysql
// (go-sql-driver) drivers with Mattermost's DSN formats, the start-up ping
// retry loop, the tables it creates when missing (Users, Teams, Channels,
// Posts, Systems, ...; unquoted CamelCase names, lower-cased by PostgreSQL as
// in a real Mattermost database), sessions kept in the database so several app
// servers share logins, and reads of posts through SqlSettings.DataSourceReplicas
// (round-robin, falling back to the primary when a replica is unreachable).
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lib/pq"

	"mmdeploy.test/standin/mattermost/internal/config"
	"mmdeploy.test/standin/mattermost/internal/mmid"
)

func init() {
	config.OpenFunc = func(driver, dsn string) (*sql.DB, error) { return sql.Open(driver, dsn) }
}

// Real server: DBPingAttempts = 5, DBPingTimeoutSecs = 10.
const (
	DBPingAttempts = 5
	DBPingInterval = 10 * time.Second
)

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned on a unique-key violation.
var ErrConflict = errors.New("already exists")

// Logf is the logger the store uses.
type Logf func(level, msg string, kv ...any)

type replica struct {
	name         string
	db           *sql.DB
	offlineUntil atomic.Int64 // unix ms; 0 = online
}

// Store is the stand-in's database layer.
type Store struct {
	Driver  string
	p       atomic.Pointer[pools] // swapped by Recycle
	rr      atomic.Uint64
	log     Logf
	timeout time.Duration
	// Licensed reports whether a valid license is loaded: like the real
	// server, reads use DataSourceReplicas only with a license.
	Licensed func() bool

	ReplicaReads atomic.Int64
	PrimaryReads atomic.Int64
	mu           sync.Mutex
}

func pingInterval() time.Duration {
	if v := os.Getenv("MMSTANDIN_DB_PING_INTERVAL_SECONDS"); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
			return time.Duration(f * float64(time.Second))
		}
	}
	return DBPingInterval
}

// Open connects to the primary with the real server's retry loop, creates the
// tables if missing and opens the replicas (an unreachable replica is logged
// and left out of rotation until it answers).
func Open(cfg *config.Config, log Logf, serverVersion string) (*Store, error) {
	driver := *cfg.SqlSettings.DriverName
	s := &Store{Driver: driver, log: log, timeout: time.Duration(*cfg.SqlSettings.QueryTimeout) * time.Second,
		Licensed: func() bool { return false }}
	db, err := s.openPrimary(cfg)
	if err != nil {
		return nil, err
	}
	interval := pingInterval()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			break
		}
		if i == DBPingAttempts-1 {
			db.Close()
			return nil, fmt.Errorf("error pinging the database after %d attempts: %v", DBPingAttempts, err)
		}
		log("error", "Failed to ping DB", "error", err.Error(), "retrying in seconds", interval.Seconds())
		time.Sleep(interval)
	}
	log("info", "Pinged the database", "driver", driver, "datasource", config.RedactDSN(*cfg.SqlSettings.DataSource))
	reps, err := s.openReplicas(cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.p.Store(&pools{primary: db, replicas: reps})
	if err := s.migrate(serverVersion); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

type pools struct {
	primary  *sql.DB
	replicas []*replica
}

func (s *Store) db() *sql.DB { return s.p.Load().primary }

func (s *Store) openPrimary(cfg *config.Config) (*sql.DB, error) {
	dsn, err := config.DriverDSN(s.Driver, *cfg.SqlSettings.DataSource)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open(s.Driver, dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxIdleConns(*cfg.SqlSettings.MaxIdleConns)
	db.SetMaxOpenConns(*cfg.SqlSettings.MaxOpenConns)
	db.SetConnMaxLifetime(time.Hour)
	return db, nil
}

func (s *Store) openReplicas(cfg *config.Config) ([]*replica, error) {
	var out []*replica
	for i, r := range cfg.SqlSettings.DataSourceReplicas {
		rdsn, err := config.DriverDSN(s.Driver, r)
		if err != nil {
			return nil, err
		}
		rdb, err := sql.Open(s.Driver, rdsn)
		if err != nil {
			return nil, err
		}
		rep := &replica{name: fmt.Sprintf("replica%d", i), db: rdb}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := rdb.PingContext(ctx); err != nil {
			s.log("warn", "Read replica is unreachable; using the primary until it answers", "replica", rep.name, "datasource", config.RedactDSN(r), "error", err.Error())
			rep.offlineUntil.Store(time.Now().Add(10 * time.Second).UnixMilli())
		}
		cancel()
		out = append(out, rep)
	}
	return out, nil
}

// Recycle replaces every connection pool with new connections to the
// SqlSettings of cfg (POST /api/v4/database/recycle, as after a DataSource
// change in HA). The new primary must answer a ping within the query timeout;
// the old pools are closed after in-flight queries had time to finish.
func (s *Store) Recycle(cfg *config.Config) error {
	db, err := s.openPrimary(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return fmt.Errorf("the new primary does not answer: %w", err)
	}
	reps, err := s.openReplicas(cfg)
	if err != nil {
		db.Close()
		return err
	}
	old := s.p.Swap(&pools{primary: db, replicas: reps})
	s.log("info", "Recycled the database connections", "datasource", config.RedactDSN(*cfg.SqlSettings.DataSource), "replicas", len(reps))
	time.AfterFunc(s.timeout+time.Second, func() { old.close() })
	return nil
}

func (p *pools) close() {
	p.primary.Close()
	for _, r := range p.replicas {
		r.db.Close()
	}
}

// Close closes every connection pool.
func (s *Store) Close() { s.p.Load().close() }

// Stats for /metrics.
func (s *Store) PrimaryOpenConnections() int { return s.db().Stats().OpenConnections }
func (s *Store) ReplicaOpenConnections() int {
	n := 0
	for _, r := range s.p.Load().replicas {
		n += r.db.Stats().OpenConnections
	}
	return n
}
func (s *Store) ReplicaCount() int { return len(s.p.Load().replicas) }

func (s *Store) q(query string) string {
	if s.Driver != "postgres" {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

func (s *Store) exec(query string, args ...any) error {
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.db().ExecContext(ctx, s.q(query), args...)
	return mapErr(err)
}

func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var pe *pq.Error
	if errors.As(err, &pe) && pe.Code == "23505" {
		return ErrConflict
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1062 {
		return ErrConflict
	}
	return err
}

func (s *Store) baseDDL() []string {
	text := "TEXT"
	if s.Driver == "mysql" {
		text = "MEDIUMTEXT"
	}
	ddl := []string{
		`CREATE TABLE IF NOT EXISTS Systems (Name VARCHAR(64) PRIMARY KEY, Value VARCHAR(1024))`,
		`CREATE TABLE IF NOT EXISTS Users (Id VARCHAR(26) PRIMARY KEY, CreateAt BIGINT, UpdateAt BIGINT, DeleteAt BIGINT,
			Username VARCHAR(64) UNIQUE, Password VARCHAR(128), Email VARCHAR(128) UNIQUE, EmailVerified BOOLEAN,
			Nickname VARCHAR(64), FirstName VARCHAR(64), LastName VARCHAR(64), Roles VARCHAR(256), Locale VARCHAR(5))`,
		`CREATE TABLE IF NOT EXISTS Teams (Id VARCHAR(26) PRIMARY KEY, CreateAt BIGINT, UpdateAt BIGINT, DeleteAt BIGINT,
			DisplayName VARCHAR(64), Name VARCHAR(64) UNIQUE, Description VARCHAR(255), Email VARCHAR(128), Type VARCHAR(255),
			AllowOpenInvite BOOLEAN)`,
		`CREATE TABLE IF NOT EXISTS TeamMembers (TeamId VARCHAR(26), UserId VARCHAR(26), Roles VARCHAR(64), DeleteAt BIGINT,
			PRIMARY KEY (TeamId, UserId))`,
		`CREATE TABLE IF NOT EXISTS Channels (Id VARCHAR(26) PRIMARY KEY, CreateAt BIGINT, UpdateAt BIGINT, DeleteAt BIGINT,
			TeamId VARCHAR(26), Type VARCHAR(1), DisplayName VARCHAR(64), Name VARCHAR(64), Header ` + text + `,
			Purpose VARCHAR(250), LastPostAt BIGINT, TotalMsgCount BIGINT, CreatorId VARCHAR(26), UNIQUE (Name, TeamId))`,
		`CREATE TABLE IF NOT EXISTS ChannelMembers (ChannelId VARCHAR(26), UserId VARCHAR(26), Roles VARCHAR(64),
			LastViewedAt BIGINT, MsgCount BIGINT, LastUpdateAt BIGINT, PRIMARY KEY (ChannelId, UserId))`,
		`CREATE TABLE IF NOT EXISTS Posts (Id VARCHAR(26) PRIMARY KEY, CreateAt BIGINT, UpdateAt BIGINT, EditAt BIGINT,
			DeleteAt BIGINT, IsPinned BOOLEAN, UserId VARCHAR(26), ChannelId VARCHAR(26), RootId VARCHAR(26),
			OriginalId VARCHAR(26), Message ` + text + `, Type VARCHAR(26), Props ` + text + `, Hashtags ` + text + `)`,
		`CREATE TABLE IF NOT EXISTS Sessions (Id VARCHAR(26) PRIMARY KEY, Token VARCHAR(26) UNIQUE, CreateAt BIGINT,
			ExpiresAt BIGINT, LastActivityAt BIGINT, UserId VARCHAR(26), Roles VARCHAR(256))`,
		`CREATE TABLE IF NOT EXISTS Jobs (Id VARCHAR(26) PRIMARY KEY, Type VARCHAR(32), Priority BIGINT, CreateAt BIGINT,
			StartAt BIGINT, LastActivityAt BIGINT, Status VARCHAR(32), Progress BIGINT, Data ` + text + `)`,
	}
	return ddl
}

// firstRunRows writes the Systems rows the real server writes on first start.
func (s *Store) firstRunRows() error {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for _, kv := range [][2]string{{"DiagnosticId", mmid.New()}, {"FirstServerRunTimestamp", now}} {
		if _, err := s.GetSystem(kv[0]); errors.Is(err, ErrNotFound) {
			if err := s.exec(`INSERT INTO Systems (Name, Value) VALUES (?, ?)`, kv[0], kv[1]); err != nil && !errors.Is(err, ErrConflict) {
				return err
			}
		}
	}
	return nil
}

// GetSystem reads a Systems row from the primary.
func (s *Store) GetSystem(name string) (string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var v string
	err := s.db().QueryRowContext(ctx, s.q(`SELECT Value FROM Systems WHERE Name = ?`), name).Scan(&v)
	return v, mapErr(err)
}

// SaveSystem upserts a Systems row.
func (s *Store) SaveSystem(name, value string) error {
	if s.Driver == "mysql" {
		return s.exec(`INSERT INTO Systems (Name, Value) VALUES (?, ?) ON DUPLICATE KEY UPDATE Value = VALUES(Value)`, name, value)
	}
	return s.exec(`INSERT INTO Systems (Name, Value) VALUES (?, ?) ON CONFLICT (Name) DO UPDATE SET Value = EXCLUDED.Value`, name, value)
}

// HealthCheckWrite writes and removes a row, as the real DBHealthCheckWrite does.
func (s *Store) HealthCheckWrite() error {
	host, _ := os.Hostname()
	name := "health_check_" + host
	if len(name) > 64 {
		name = name[:64]
	}
	if err := s.SaveSystem(name, strconv.FormatInt(time.Now().UnixMilli(), 10)); err != nil {
		return err
	}
	return s.exec(`DELETE FROM Systems WHERE Name = ?`, name)
}

// ---- users ----

type User struct {
	Id            string `json:"id"`
	CreateAt      int64  `json:"create_at"`
	UpdateAt      int64  `json:"update_at"`
	DeleteAt      int64  `json:"delete_at"`
	Username      string `json:"username"`
	Password      string `json:"password,omitempty"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	Nickname      string `json:"nickname"`
	FirstName     string `json:"first_name"`
	LastName      string `json:"last_name"`
	Roles         string `json:"roles"`
	Locale        string `json:"locale"`
}

const userCols = `Id, CreateAt, UpdateAt, DeleteAt, Username, Password, Email, EmailVerified, Nickname, FirstName, LastName, Roles, Locale`

func scanUser(row interface{ Scan(...any) error }) (*User, error) {
	var u User
	err := row.Scan(&u.Id, &u.CreateAt, &u.UpdateAt, &u.DeleteAt, &u.Username, &u.Password, &u.Email, &u.EmailVerified,
		&u.Nickname, &u.FirstName, &u.LastName, &u.Roles, &u.Locale)
	if err != nil {
		return nil, mapErr(err)
	}
	return &u, nil
}

// SaveUser inserts a user whose Password is already hashed.
func (s *Store) SaveUser(u *User) error {
	return s.exec(`INSERT INTO Users (`+userCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		u.Id, u.CreateAt, u.UpdateAt, u.DeleteAt, u.Username, u.Password, u.Email, u.EmailVerified,
		u.Nickname, u.FirstName, u.LastName, u.Roles, u.Locale)
}

// GetUserBy looks a user up by column Id, Username or Email.
func (s *Store) GetUserBy(col, value string) (*User, error) {
	switch col {
	case "Id", "Username", "Email":
	default:
		return nil, fmt.Errorf("bad column %q", col)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	return scanUser(s.db().QueryRowContext(ctx, s.q(`SELECT `+userCols+` FROM Users WHERE `+col+` = ?`), value))
}

// ListUsers returns users ordered by username.
func (s *Store) ListUsers(offset, limit int) ([]*User, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db().QueryContext(ctx, s.q(`SELECT `+userCols+` FROM Users ORDER BY Username LIMIT ? OFFSET ?`), limit, offset)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// UpdateUserRoles sets a user's system roles.
func (s *Store) UpdateUserRoles(id, roles string) error {
	return s.exec(`UPDATE Users SET Roles = ?, UpdateAt = ? WHERE Id = ?`, roles, time.Now().UnixMilli(), id)
}

// UpdateUserProfile stores a user's nickname and names.
func (s *Store) UpdateUserProfile(u *User) error {
	u.UpdateAt = time.Now().UnixMilli()
	return s.exec(`UPDATE Users SET Nickname = ?, FirstName = ?, LastName = ?, UpdateAt = ? WHERE Id = ?`,
		u.Nickname, u.FirstName, u.LastName, u.UpdateAt, u.Id)
}

// UpdateUserPassword stores an already-hashed (bcrypt) password.
func (s *Store) UpdateUserPassword(id, hash string) error {
	return s.exec(`UPDATE Users SET Password = ?, UpdateAt = ? WHERE Id = ?`, hash, time.Now().UnixMilli(), id)
}

// ---- sessions ----

type Session struct {
	Id, Token, UserId, Roles, DeviceId string
	CreateAt, ExpiresAt                int64
}

func (s *Store) SaveSession(ss *Session) error {
	return s.exec(`INSERT INTO Sessions (Id, Token, CreateAt, ExpiresAt, LastActivityAt, UserId, Roles, DeviceId) VALUES (?,?,?,?,?,?,?,?)`,
		ss.Id, ss.Token, ss.CreateAt, ss.ExpiresAt, ss.CreateAt, ss.UserId, ss.Roles, ss.DeviceId)
}

func (s *Store) GetSession(token string) (*Session, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var ss Session
	err := s.db().QueryRowContext(ctx, s.q(`SELECT Id, Token, CreateAt, ExpiresAt, UserId, Roles, DeviceId FROM Sessions WHERE Token = ?`), token).
		Scan(&ss.Id, &ss.Token, &ss.CreateAt, &ss.ExpiresAt, &ss.UserId, &ss.Roles, &ss.DeviceId)
	if err != nil {
		return nil, mapErr(err)
	}
	return &ss, nil
}

// ---- teams and channels ----

type Team struct {
	Id              string `json:"id"`
	CreateAt        int64  `json:"create_at"`
	UpdateAt        int64  `json:"update_at"`
	DeleteAt        int64  `json:"delete_at"`
	DisplayName     string `json:"display_name"`
	Name            string `json:"name"`
	Description     string `json:"description"`
	Email           string `json:"email"`
	Type            string `json:"type"`
	AllowOpenInvite bool   `json:"allow_open_invite"`
}

const teamCols = `Id, CreateAt, UpdateAt, DeleteAt, DisplayName, Name, Description, Email, Type, AllowOpenInvite`

func scanTeam(row interface{ Scan(...any) error }) (*Team, error) {
	var t Team
	if err := row.Scan(&t.Id, &t.CreateAt, &t.UpdateAt, &t.DeleteAt, &t.DisplayName, &t.Name, &t.Description, &t.Email, &t.Type, &t.AllowOpenInvite); err != nil {
		return nil, mapErr(err)
	}
	return &t, nil
}

type Channel struct {
	Id            string `json:"id"`
	CreateAt      int64  `json:"create_at"`
	UpdateAt      int64  `json:"update_at"`
	DeleteAt      int64  `json:"delete_at"`
	TeamId        string `json:"team_id"`
	Type          string `json:"type"`
	DisplayName   string `json:"display_name"`
	Name          string `json:"name"`
	Header        string `json:"header"`
	Purpose       string `json:"purpose"`
	LastPostAt    int64  `json:"last_post_at"`
	TotalMsgCount int64  `json:"total_msg_count"`
	CreatorId     string `json:"creator_id"`
}

const channelCols = `Id, CreateAt, UpdateAt, DeleteAt, TeamId, Type, DisplayName, Name, Header, Purpose, LastPostAt, TotalMsgCount, CreatorId`

func scanChannel(row interface{ Scan(...any) error }) (*Channel, error) {
	var c Channel
	if err := row.Scan(&c.Id, &c.CreateAt, &c.UpdateAt, &c.DeleteAt, &c.TeamId, &c.Type, &c.DisplayName, &c.Name, &c.Header,
		&c.Purpose, &c.LastPostAt, &c.TotalMsgCount, &c.CreatorId); err != nil {
		return nil, mapErr(err)
	}
	return &c, nil
}

// SaveTeam inserts the team and its default channels (town-square, off-topic),
// as the real server does, in one transaction.
func (s *Store) SaveTeam(t *Team) error {
	ctx, cancel := s.ctx()
	defer cancel()
	tx, err := s.db().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO Teams (`+teamCols+`) VALUES (?,?,?,?,?,?,?,?,?,?)`),
		t.Id, t.CreateAt, t.UpdateAt, t.DeleteAt, t.DisplayName, t.Name, t.Description, t.Email, t.Type, t.AllowOpenInvite); err != nil {
		return mapErr(err)
	}
	for _, ch := range [][2]string{{"town-square", "Town Square"}, {"off-topic", "Off-Topic"}} {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO Channels (`+channelCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`),
			mmid.New(), t.CreateAt, t.CreateAt, 0, t.Id, "O", ch[1], ch[0], "", "", t.CreateAt, 0, ""); err != nil {
			return mapErr(err)
		}
	}
	return mapErr(tx.Commit())
}

// GetTeamBy looks a team up by Id or Name.
func (s *Store) GetTeamBy(col, value string) (*Team, error) {
	if col != "Id" && col != "Name" {
		return nil, fmt.Errorf("bad column %q", col)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	return scanTeam(s.db().QueryRowContext(ctx, s.q(`SELECT `+teamCols+` FROM Teams WHERE `+col+` = ? AND DeleteAt = 0`), value))
}

// ListTeams returns all teams ordered by name.
func (s *Store) ListTeams() ([]*Team, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db().QueryContext(ctx, s.q(`SELECT `+teamCols+` FROM Teams WHERE DeleteAt = 0 ORDER BY Name`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*Team{}
	for rows.Next() {
		t, err := scanTeam(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// AddTeamMember adds the user to the team and its default channels; adding
// an existing member is not an error (as in the real server).
func (s *Store) AddTeamMember(teamID, userID string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	tx, err := s.db().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ignore := "INSERT INTO"
	suffix := " ON CONFLICT DO NOTHING"
	if s.Driver == "mysql" {
		ignore, suffix = "INSERT IGNORE INTO", ""
	}
	if _, err := tx.ExecContext(ctx, s.q(ignore+` TeamMembers (TeamId, UserId, Roles, DeleteAt) VALUES (?,?,?,0)`+suffix), teamID, userID, "team_user"); err != nil {
		return mapErr(err)
	}
	now := time.Now().UnixMilli()
	if _, err := tx.ExecContext(ctx, s.q(ignore+` ChannelMembers (ChannelId, UserId, Roles, LastViewedAt, MsgCount, LastUpdateAt)
		SELECT Id, ?, 'channel_user', 0, 0, ? FROM Channels WHERE TeamId = ? AND Name IN ('town-square', 'off-topic')`+suffix), userID, now, teamID); err != nil {
		return mapErr(err)
	}
	return mapErr(tx.Commit())
}

// IsTeamMember tells whether the user belongs to the team.
func (s *Store) IsTeamMember(teamID, userID string) (bool, error) {
	return s.exists(`SELECT 1 FROM TeamMembers WHERE TeamId = ? AND UserId = ? AND DeleteAt = 0`, teamID, userID)
}

// IsChannelMember tells whether the user belongs to the channel.
func (s *Store) IsChannelMember(channelID, userID string) (bool, error) {
	return s.exists(`SELECT 1 FROM ChannelMembers WHERE ChannelId = ? AND UserId = ?`, channelID, userID)
}

// ChannelMemberIDs lists the users of a channel (for websocket broadcasts).
func (s *Store) ChannelMemberIDs(channelID string) (map[string]bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db().QueryContext(ctx, s.q(`SELECT UserId FROM ChannelMembers WHERE ChannelId = ?`), channelID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

func (s *Store) exists(query string, args ...any) (bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var one int
	err := s.db().QueryRowContext(ctx, s.q(query), args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// GetChannelByName finds a channel of a team by name.
func (s *Store) GetChannelByName(teamID, name string) (*Channel, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	return scanChannel(s.db().QueryRowContext(ctx, s.q(`SELECT `+channelCols+` FROM Channels WHERE TeamId = ? AND Name = ? AND DeleteAt = 0`), teamID, name))
}

// GetChannel finds a channel by id.
func (s *Store) GetChannel(id string) (*Channel, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	return scanChannel(s.db().QueryRowContext(ctx, s.q(`SELECT `+channelCols+` FROM Channels WHERE Id = ?`), id))
}

// ---- posts ----

type Post struct {
	Id            string         `json:"id"`
	CreateAt      int64          `json:"create_at"`
	UpdateAt      int64          `json:"update_at"`
	EditAt        int64          `json:"edit_at"`
	DeleteAt      int64          `json:"delete_at"`
	IsPinned      bool           `json:"is_pinned"`
	UserId        string         `json:"user_id"`
	ChannelId     string         `json:"channel_id"`
	RootId        string         `json:"root_id"`
	OriginalId    string         `json:"original_id"`
	Message       string         `json:"message"`
	Type          string         `json:"type"`
	Props         map[string]any `json:"props"`
	Hashtags      string         `json:"hashtags"`
	PendingPostId string         `json:"pending_post_id"`
	FileIds       []string       `json:"file_ids,omitempty"`
	ReplyCount    int64          `json:"reply_count"`
	Metadata      map[string]any `json:"metadata"`
}

const postCols = `Id, CreateAt, UpdateAt, EditAt, DeleteAt, IsPinned, UserId, ChannelId, RootId, OriginalId, Message, Type, Props, Hashtags, FileIds`

func scanPost(row interface{ Scan(...any) error }) (*Post, error) {
	var p Post
	var props, fileIds string
	if err := row.Scan(&p.Id, &p.CreateAt, &p.UpdateAt, &p.EditAt, &p.DeleteAt, &p.IsPinned, &p.UserId, &p.ChannelId,
		&p.RootId, &p.OriginalId, &p.Message, &p.Type, &props, &p.Hashtags, &fileIds); err != nil {
		return nil, mapErr(err)
	}
	p.Props = map[string]any{}
	json.Unmarshal([]byte(props), &p.Props)
	json.Unmarshal([]byte(fileIds), &p.FileIds)
	p.Metadata = map[string]any{}
	return &p, nil
}

// SavePost inserts a post and bumps the channel's counters.
func (s *Store) SavePost(p *Post) error {
	fileIds, _ := json.Marshal(p.FileIds)
	if p.FileIds == nil {
		fileIds = []byte("[]")
	}
	props, _ := json.Marshal(p.Props)
	if err := s.exec(`INSERT INTO Posts (`+postCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		p.Id, p.CreateAt, p.UpdateAt, p.EditAt, p.DeleteAt, p.IsPinned, p.UserId, p.ChannelId, p.RootId, p.OriginalId, p.Message, p.Type, string(props), p.Hashtags, string(fileIds)); err != nil {
		return err
	}
	return s.exec(`UPDATE Channels SET LastPostAt = ?, TotalMsgCount = TotalMsgCount + 1 WHERE Id = ?`, p.CreateAt, p.ChannelId)
}

// readDB picks the next online replica round-robin, else the primary.
// Without a license the real server reads only from the primary.
func (s *Store) readDB() (*sql.DB, *replica) {
	p := s.p.Load()
	n := len(p.replicas)
	if n == 0 || !s.Licensed() {
		return p.primary, nil
	}
	now := time.Now().UnixMilli()
	for i := 0; i < n; i++ {
		r := p.replicas[int(s.rr.Add(1)-1)%n]
		if until := r.offlineUntil.Load(); until == 0 || until <= now {
			return r.db, r
		}
	}
	return p.primary, nil
}

// GetPost reads a post through a read replica when configured; a replica
// that fails with a connection error is taken out of rotation for 10 s and
// the read falls back to the primary. It returns where the row was read.
func (s *Store) GetPost(id string) (*Post, string, error) {
	db, rep := s.readDB()
	p, err := s.getPostFrom(db, id)
	if rep != nil {
		if err == nil || errors.Is(err, ErrNotFound) {
			rep.offlineUntil.Store(0)
			s.ReplicaReads.Add(1)
			return p, rep.name, err
		}
		s.log("warn", "Read replica failed; falling back to the primary", "replica", rep.name, "error", err.Error())
		rep.offlineUntil.Store(time.Now().Add(10 * time.Second).UnixMilli())
		p, err = s.getPostFrom(s.db(), id)
	}
	s.PrimaryReads.Add(1)
	return p, "primary", err
}

func (s *Store) getPostFrom(db *sql.DB, id string) (*Post, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	return scanPost(db.QueryRowContext(ctx, s.q(`SELECT `+postCols+` FROM Posts WHERE Id = ? AND DeleteAt = 0`), id))
}

// CountPosts counts posts on the primary (metrics).
func (s *Store) CountPosts() (int64, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var n int64
	err := s.db().QueryRowContext(ctx, `SELECT COUNT(*) FROM Posts`).Scan(&n)
	return n, err
}

// ---- jobs ----

// RecordJobRun upserts the job server's heartbeat job row.
func (s *Store) RecordJobRun(jobType, host, dbHost string) error {
	now := time.Now().UnixMilli()
	name := "JobServerHeartbeat_" + host
	if len(name) > 64 {
		name = name[:64]
	}
	if err := s.SaveSystem(name, strconv.FormatInt(now, 10)); err != nil {
		return err
	}
	return s.exec(`INSERT INTO Jobs (Id, Type, Priority, CreateAt, StartAt, LastActivityAt, Status, Progress, Data) VALUES (?,?,?,?,?,?,?,?,?)`,
		mmid.New(), jobType, 0, now, now, now, "success", 100, `{"host":"`+host+`","datasource_host":"`+dbHost+`"}`)
}
