package store

// More of the stand-in SQL store (see store.go): the queries behind client
// bootstrap, sessions with mobile device ids, file infos, licenses, cluster
// discovery and the database search fallback.

import (
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// ---- sessions ----

// DeleteSession removes a session (logout).
func (s *Store) DeleteSession(token string) error {
	return s.exec(`DELETE FROM Sessions WHERE Token = ?`, token)
}

// AttachDevice sets the session's device id; like the real server, other
// sessions registered with the same device id are revoked.
func (s *Store) AttachDevice(sessionID, deviceID string) error {
	if err := s.exec(`DELETE FROM Sessions WHERE DeviceId = ? AND Id <> ?`, deviceID, sessionID); err != nil {
		return err
	}
	return s.exec(`UPDATE Sessions SET DeviceId = ? WHERE Id = ?`, deviceID, sessionID)
}

// DeviceIDs returns the device ids of the user's live sessions.
func (s *Store) DeviceIDs(userID string) ([]string, error) {
	return s.strings(`SELECT DeviceId FROM Sessions WHERE UserId = ? AND DeviceId <> '' AND (ExpiresAt = 0 OR ExpiresAt > ?)`, userID, time.Now().UnixMilli())
}

func (s *Store) strings(query string, args ...any) ([]string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db().QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ---- teams and channels of a user ----

// TeamsForUser lists the teams the user belongs to.
func (s *Store) TeamsForUser(userID string) ([]*Team, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db().QueryContext(ctx, s.q(`SELECT `+prefixed("t.", teamCols)+` FROM Teams t JOIN TeamMembers m ON m.TeamId = t.Id
		WHERE m.UserId = ? AND m.DeleteAt = 0 AND t.DeleteAt = 0 ORDER BY t.Name`), userID)
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

// TeamMember is the real model.TeamMember's JSON subset.
type TeamMember struct {
	TeamId      string `json:"team_id"`
	UserId      string `json:"user_id"`
	Roles       string `json:"roles"`
	DeleteAt    int64  `json:"delete_at"`
	SchemeUser  bool   `json:"scheme_user"`
	SchemeAdmin bool   `json:"scheme_admin"`
	SchemeGuest bool   `json:"scheme_guest"`
}

// TeamMembersForUser lists the user's team memberships.
func (s *Store) TeamMembersForUser(userID string) ([]*TeamMember, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db().QueryContext(ctx, s.q(`SELECT TeamId, UserId, Roles, DeleteAt FROM TeamMembers WHERE UserId = ? AND DeleteAt = 0 ORDER BY TeamId`), userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*TeamMember{}
	for rows.Next() {
		m := &TeamMember{SchemeUser: true}
		if err := rows.Scan(&m.TeamId, &m.UserId, &m.Roles, &m.DeleteAt); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// ChannelsForUser lists the user's channels in a team.
func (s *Store) ChannelsForUser(teamID, userID string) ([]*Channel, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db().QueryContext(ctx, s.q(`SELECT `+prefixed("c.", channelCols)+` FROM Channels c JOIN ChannelMembers m ON m.ChannelId = c.Id
		WHERE c.TeamId = ? AND m.UserId = ? AND c.DeleteAt = 0 ORDER BY c.Name`), teamID, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*Channel{}
	for rows.Next() {
		c, err := scanChannel(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ChannelIDsForUser lists the ids of the user's channels in a team (search scope).
func (s *Store) ChannelIDsForUser(teamID, userID string) ([]string, error) {
	return s.strings(`SELECT c.Id FROM Channels c JOIN ChannelMembers m ON m.ChannelId = c.Id WHERE c.TeamId = ? AND m.UserId = ? AND c.DeleteAt = 0`, teamID, userID)
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// ---- posts ----

// PostsForChannel returns a page of a channel's posts, newest first; with
// since > 0, every post created or updated after since (the real
// GET /channels/{id}/posts?since=).
func (s *Store) PostsForChannel(channelID string, offset, limit int, since int64) ([]*Post, error) {
	db, _ := s.readDB()
	ctx, cancel := s.ctx()
	defer cancel()
	var rows *sql.Rows
	var err error
	if since > 0 {
		rows, err = db.QueryContext(ctx, s.q(`SELECT `+postCols+` FROM Posts WHERE ChannelId = ? AND (CreateAt > ? OR UpdateAt > ?) ORDER BY CreateAt DESC LIMIT 1000`), channelID, since, since)
	} else {
		rows, err = db.QueryContext(ctx, s.q(`SELECT `+postCols+` FROM Posts WHERE ChannelId = ? AND DeleteAt = 0 ORDER BY CreateAt DESC LIMIT ? OFFSET ?`), channelID, limit, offset)
	}
	if err != nil {
		return nil, err
	}
	return collectPosts(rows)
}

func collectPosts(rows *sql.Rows) ([]*Post, error) {
	defer rows.Close()
	out := []*Post{}
	for rows.Next() {
		p, err := scanPost(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// PostsByIDs returns the live posts with these ids (search results).
func (s *Store) PostsByIDs(ids []string) ([]*Post, error) {
	if len(ids) == 0 {
		return []*Post{}, nil
	}
	db, _ := s.readDB()
	ctx, cancel := s.ctx()
	defer cancel()
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := db.QueryContext(ctx, s.q(`SELECT `+postCols+` FROM Posts WHERE DeleteAt = 0 AND Id IN (?`+strings.Repeat(",?", len(ids)-1)+`) ORDER BY CreateAt DESC`), args...)
	if err != nil {
		return nil, err
	}
	return collectPosts(rows)
}

// SearchPosts is the database search: every term must appear in the message
// (case-insensitive LIKE), in the given channels, newest first. The real
// server's database search uses full-text indexes; the matching rule here is
// simpler but the API boundary is the same.
func (s *Store) SearchPosts(channelIDs, terms []string, limit int) ([]*Post, error) {
	if len(channelIDs) == 0 || len(terms) == 0 {
		return []*Post{}, nil
	}
	db, _ := s.readDB()
	ctx, cancel := s.ctx()
	defer cancel()
	var args []any
	for _, c := range channelIDs {
		args = append(args, c)
	}
	q := `SELECT ` + postCols + ` FROM Posts WHERE DeleteAt = 0 AND ChannelId IN (?` + strings.Repeat(",?", len(channelIDs)-1) + `)`
	for _, t := range terms {
		q += ` AND LOWER(Message) LIKE ?`
		args = append(args, "%"+strings.ToLower(t)+"%")
	}
	q += ` ORDER BY CreateAt DESC LIMIT ?`
	args = append(args, limit)
	rows, err := db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, err
	}
	return collectPosts(rows)
}

// AllPostsSince returns posts created at or after since, oldest first (bulk indexing).
func (s *Store) AllPostsSince(since int64, limit int) ([]*Post, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db().QueryContext(ctx, s.q(`SELECT `+postCols+` FROM Posts WHERE DeleteAt = 0 AND CreateAt >= ? ORDER BY CreateAt LIMIT ?`), since, limit)
	if err != nil {
		return nil, err
	}
	return collectPosts(rows)
}

// ---- files ----

// FileInfo is the real model.FileInfo's JSON subset.
type FileInfo struct {
	Id              string  `json:"id"`
	CreatorId       string  `json:"user_id"`
	PostId          string  `json:"post_id"`
	ChannelId       string  `json:"channel_id"`
	CreateAt        int64   `json:"create_at"`
	UpdateAt        int64   `json:"update_at"`
	DeleteAt        int64   `json:"delete_at"`
	Path            string  `json:"-"`
	Name            string  `json:"name"`
	Extension       string  `json:"extension"`
	Size            int64   `json:"size"`
	MimeType        string  `json:"mime_type"`
	Width           int     `json:"width"`
	Height          int     `json:"height"`
	HasPreviewImage bool    `json:"has_preview_image"`
	MiniPreview     *string `json:"mini_preview"`
	Archived        bool    `json:"archived"`
}

const fileCols = `Id, CreatorId, PostId, ChannelId, CreateAt, UpdateAt, DeleteAt, Path, Name, Extension, Size, MimeType`

func (s *Store) SaveFileInfo(f *FileInfo) error {
	return s.exec(`INSERT INTO FileInfo (`+fileCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		f.Id, f.CreatorId, f.PostId, f.ChannelId, f.CreateAt, f.UpdateAt, f.DeleteAt, f.Path, f.Name, f.Extension, f.Size, f.MimeType)
}

func (s *Store) GetFileInfo(id string) (*FileInfo, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var f FileInfo
	err := s.db().QueryRowContext(ctx, s.q(`SELECT `+fileCols+` FROM FileInfo WHERE Id = ? AND DeleteAt = 0`), id).
		Scan(&f.Id, &f.CreatorId, &f.PostId, &f.ChannelId, &f.CreateAt, &f.UpdateAt, &f.DeleteAt, &f.Path, &f.Name, &f.Extension, &f.Size, &f.MimeType)
	if err != nil {
		return nil, mapErr(err)
	}
	return &f, nil
}

// AttachFilesToPost sets PostId on the creator's unattached files.
func (s *Store) AttachFilesToPost(postID, creatorID string, ids []string) error {
	for _, id := range ids {
		if err := s.exec(`UPDATE FileInfo SET PostId = ?, UpdateAt = ? WHERE Id = ? AND CreatorId = ? AND PostId = ''`, postID, time.Now().UnixMilli(), id, creatorID); err != nil {
			return err
		}
	}
	return nil
}

// ---- licenses (POST /api/v4/license stores them like the real server) ----

func (s *Store) SaveLicense(id string, raw []byte) error {
	if err := s.exec(`INSERT INTO Licenses (Id, CreateAt, Bytes) VALUES (?, ?, ?)`, id, time.Now().UnixMilli(), string(raw)); err != nil && !errors.Is(err, ErrConflict) {
		return err
	}
	return s.SaveSystem("ActiveLicenseId", id)
}

// ActiveLicense returns the bytes of the license named by Systems.ActiveLicenseId.
func (s *Store) ActiveLicense() ([]byte, error) {
	id, err := s.GetSystem("ActiveLicenseId")
	if err != nil || id == "" {
		return nil, ErrNotFound
	}
	ctx, cancel := s.ctx()
	defer cancel()
	var b string
	if err := s.db().QueryRowContext(ctx, s.q(`SELECT Bytes FROM Licenses WHERE Id = ?`), id).Scan(&b); err != nil {
		return nil, mapErr(err)
	}
	return []byte(b), nil
}

// RemoveLicense clears the active license (DELETE /api/v4/license).
func (s *Store) RemoveLicense() error {
	return s.exec(`DELETE FROM Systems WHERE Name = 'ActiveLicenseId'`)
}

// ---- cluster discovery (the real ClusterDiscovery table) ----

type Discovery struct {
	Id, Type, ClusterName, Hostname string
	GossipPort                      int
	CreateAt, LastPingAt            int64
}

// SaveDiscovery inserts the node's row, or pings it when it exists.
func (s *Store) SaveDiscovery(d *Discovery) error {
	ctx, cancel := s.ctx()
	defer cancel()
	res, err := s.db().ExecContext(ctx, s.q(`UPDATE ClusterDiscovery SET LastPingAt = ? WHERE Type = ? AND ClusterName = ? AND Hostname = ? AND GossipPort = ?`),
		time.Now().UnixMilli(), d.Type, d.ClusterName, d.Hostname, d.GossipPort)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	return s.exec(`INSERT INTO ClusterDiscovery (Id, Type, ClusterName, Hostname, GossipPort, Port, CreateAt, LastPingAt) VALUES (?,?,?,?,?,?,?,?)`,
		d.Id, d.Type, d.ClusterName, d.Hostname, d.GossipPort, 0, d.CreateAt, d.LastPingAt)
}

// ListDiscovery returns the rows of a cluster pinged since the cutoff.
func (s *Store) ListDiscovery(typ, clusterName string, since int64) ([]*Discovery, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db().QueryContext(ctx, s.q(`SELECT Id, Type, ClusterName, Hostname, GossipPort, CreateAt, LastPingAt FROM ClusterDiscovery
		WHERE Type = ? AND ClusterName = ? AND LastPingAt > ?`), typ, clusterName, since)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Discovery
	for rows.Next() {
		d := &Discovery{}
		if err := rows.Scan(&d.Id, &d.Type, &d.ClusterName, &d.Hostname, &d.GossipPort, &d.CreateAt, &d.LastPingAt); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// CleanupDiscovery removes rows not pinged since the cutoff.
func (s *Store) CleanupDiscovery(typ, clusterName string, before int64) error {
	return s.exec(`DELETE FROM ClusterDiscovery WHERE Type = ? AND ClusterName = ? AND LastPingAt < ?`, typ, clusterName, before)
}

// DeleteDiscovery removes the node's own row on shutdown.
func (s *Store) DeleteDiscovery(d *Discovery) error {
	return s.exec(`DELETE FROM ClusterDiscovery WHERE Type = ? AND ClusterName = ? AND Hostname = ? AND GossipPort = ?`, d.Type, d.ClusterName, d.Hostname, d.GossipPort)
}

// SystemSetIfAbsent stores a Systems row unless one exists and returns the stored value.
func (s *Store) SystemSetIfAbsent(name, value string) (string, error) {
	q := `INSERT INTO Systems (Name, Value) VALUES (?, ?) ON CONFLICT (Name) DO NOTHING`
	if s.Driver == "mysql" {
		q = `INSERT IGNORE INTO Systems (Name, Value) VALUES (?, ?)`
	}
	if err := s.exec(q, name, value); err != nil {
		return "", err
	}
	return s.GetSystem(name)
}

// ---- jobs (the real Jobs table) ----

// Job is the real model.Job JSON.
type Job struct {
	Id             string            `json:"id"`
	Type           string            `json:"type"`
	Priority       int64             `json:"priority"`
	CreateAt       int64             `json:"create_at"`
	StartAt        int64             `json:"start_at"`
	LastActivityAt int64             `json:"last_activity_at"`
	Status         string            `json:"status"`
	Progress       int64             `json:"progress"`
	Data           map[string]string `json:"data"`
}

const jobCols = `Id, Type, Priority, CreateAt, StartAt, LastActivityAt, Status, Progress, Data`

func scanJob(row interface{ Scan(...any) error }) (*Job, error) {
	var j Job
	var data string
	if err := row.Scan(&j.Id, &j.Type, &j.Priority, &j.CreateAt, &j.StartAt, &j.LastActivityAt, &j.Status, &j.Progress, &data); err != nil {
		return nil, mapErr(err)
	}
	j.Data = map[string]string{}
	json.Unmarshal([]byte(data), &j.Data)
	return &j, nil
}

func (s *Store) SaveJob(j *Job) error {
	data, _ := json.Marshal(j.Data)
	return s.exec(`INSERT INTO Jobs (`+jobCols+`) VALUES (?,?,?,?,?,?,?,?,?)`,
		j.Id, j.Type, j.Priority, j.CreateAt, j.StartAt, j.LastActivityAt, j.Status, j.Progress, string(data))
}

func (s *Store) GetJob(id string) (*Job, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	return scanJob(s.db().QueryRowContext(ctx, s.q(`SELECT `+jobCols+` FROM Jobs WHERE Id = ?`), id))
}

// JobsByType lists the jobs of a type, newest first (GET /api/v4/jobs/type/{type}).
func (s *Store) JobsByType(typ string, limit int) ([]*Job, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.db().QueryContext(ctx, s.q(`SELECT `+jobCols+` FROM Jobs WHERE Type = ? ORDER BY CreateAt DESC LIMIT `+strconv.Itoa(limit)), typ)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	jobs := []*Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, mapErr(rows.Err())
}

// ClaimPendingJob moves the oldest pending job of a type to in_progress (one worker wins).
func (s *Store) ClaimPendingJob(typ string) (*Job, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	j, err := scanJob(s.db().QueryRowContext(ctx, s.q(`SELECT `+jobCols+` FROM Jobs WHERE Type = ? AND Status = 'pending' ORDER BY CreateAt LIMIT 1`), typ))
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	res, err := s.db().ExecContext(ctx, s.q(`UPDATE Jobs SET Status = 'in_progress', StartAt = ?, LastActivityAt = ? WHERE Id = ? AND Status = 'pending'`), now, now, j.Id)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, ErrNotFound
	}
	j.Status, j.StartAt = "in_progress", now
	return j, nil
}

// FinishJob records a job's outcome.
func (s *Store) FinishJob(j *Job, status string, progress int64) error {
	data, _ := json.Marshal(j.Data)
	return s.exec(`UPDATE Jobs SET Status = ?, Progress = ?, LastActivityAt = ?, Data = ? WHERE Id = ?`, status, progress, time.Now().UnixMilli(), string(data), j.Id)
}
