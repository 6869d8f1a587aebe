// TEST STAND-IN for the real Mattermost server's HTTP API v4 (used because the
// Mattermost release cannot be downloaded on the test machines and the server
// is AGPL). Reproduced boundaries: exactly the API v4 subset a deploy verifier
// and mmctl --local use, with Mattermost's paths, JSON payloads, status codes,
// AppError bodies, session tokens (Token header, Authorization: Bearer/Token,
// MMAUTHTOKEN cookie) and permission checks; the local-mode unix socket API,
// with the config read and patch mmctl config patch uses.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"golang.org/x/crypto/bcrypt"

	"mmdeploy.test/standin/mattermost/internal/cluster"
	"mmdeploy.test/standin/mattermost/internal/config"
	"mmdeploy.test/standin/mattermost/internal/filestore"
	"mmdeploy.test/standin/mattermost/internal/mmid"
	"mmdeploy.test/standin/mattermost/internal/search"
	"mmdeploy.test/standin/mattermost/internal/store"
)

// Version is set at build time (-ldflags -X).
var (
	Version     = "11.1.0"
	BuildNumber = "standin"
	BuildHash   = "standin"
	BuildDate   = "n/a"
)

// VersionID is what the real server sends in X-Version-Id: version, build
// number, config hash and whether a license is in force.
func (s *Server) VersionID() string {
	return fmt.Sprintf("%s.%s.%s.%t", Version, BuildNumber, s.configHash, s.License() != nil)
}

// VersionID without a server (the broken build).
func VersionID() string { return Version + "." + BuildNumber + "." + BuildHash + ".false" }

const sessionLength = 30 * 24 * time.Hour

// Server is the stand-in app server.
type Server struct {
	Cfg   *config.Config
	Src   config.Source // where the config is stored: file or database
	Store *store.Store
	Log   *Logger
	Hub   *Hub

	NodeID        string
	license       atomic.Pointer[model.License]
	Cluster       *cluster.Cluster // nil unless cluster mode is active
	Files         filestore.Backend
	Search        *search.Engine // nil unless search is active
	schemaVersion string
	configHash    string

	Requests     atomic.Int64
	Errors       atomic.Int64
	Logins       atomic.Int64
	LoginFails   atomic.Int64
	PostsCreated atomic.Int64
	PostsIndexed atomic.Int64
	PushesSent   atomic.Int64
	JobRuns      atomic.Int64
	StartTime    time.Time
}

type appError struct {
	Id            string `json:"id"`
	Message       string `json:"message"`
	DetailedError string `json:"detailed_error"`
	RequestId     string `json:"request_id"`
	StatusCode    int    `json:"status_code"`
}

func (s *Server) writeErr(w http.ResponseWriter, status int, id, msg, detail string) {
	if status >= 500 {
		s.Errors.Add(1)
	}
	writeJSON(w, status, appError{Id: id, Message: msg, DetailedError: detail, RequestId: w.Header().Get("X-Request-Id"), StatusCode: status})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Handler returns the API mux; local=true for the local-mode socket.
func (s *Server) Handler(local bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v4/system/ping", s.ping)
	mux.HandleFunc("POST /api/v4/users/login", s.login)
	mux.HandleFunc("GET /api/v4/users/me", s.auth(s.getMe))
	mux.HandleFunc("POST /api/v4/users", s.auth(s.createUser))
	mux.HandleFunc("GET /api/v4/users", s.auth(s.listUsers))
	mux.HandleFunc("GET /api/v4/users/{user_id}", s.auth(s.getUser("Id", "user_id")))
	mux.HandleFunc("GET /api/v4/users/username/{username}", s.auth(s.getUser("Username", "username")))
	mux.HandleFunc("GET /api/v4/users/email/{email}", s.auth(s.getUser("Email", "email")))
	mux.HandleFunc("PUT /api/v4/users/{user_id}/roles", s.auth(s.updateRoles))
	mux.HandleFunc("PUT /api/v4/users/{user_id}/password", s.auth(s.updatePassword))
	mux.HandleFunc("PUT /api/v4/users/{user_id}/patch", s.auth(s.patchUser))
	mux.HandleFunc("POST /api/v4/teams", s.auth(s.createTeam))
	mux.HandleFunc("GET /api/v4/teams", s.auth(s.listTeams))
	mux.HandleFunc("GET /api/v4/teams/{team_id}", s.auth(s.getTeam("Id", "team_id")))
	mux.HandleFunc("GET /api/v4/teams/name/{name}", s.auth(s.getTeam("Name", "name")))
	mux.HandleFunc("POST /api/v4/teams/{team_id}/members", s.auth(s.addTeamMember))
	mux.HandleFunc("GET /api/v4/teams/{team_id}/channels/name/{channel_name}", s.auth(s.getChannelByName))
	mux.HandleFunc("POST /api/v4/posts", s.auth(s.createPost))
	mux.HandleFunc("GET /api/v4/posts/{post_id}", s.auth(s.getPost))
	mux.HandleFunc("POST /api/v4/users/logout", s.auth(s.logout))
	mux.HandleFunc("PUT /api/v4/users/sessions/device", s.auth(s.attachDevice))
	// {user_id}/image, /teams, /teams/members, /teams/{team_id}/channels: one
	// pattern, as Go's mux would see them conflict with users/username/{username}.
	mux.HandleFunc("GET /api/v4/users/{user_id}/{rest...}", s.auth(s.userSubresource))
	mux.HandleFunc("GET /api/v4/teams/name/{team_name}/channels/name/{channel_name}", s.auth(s.channelByTeamAndName))
	mux.HandleFunc("GET /api/v4/channels/{channel_id}", s.auth(s.getChannel))
	mux.HandleFunc("GET /api/v4/channels/{channel_id}/posts", s.auth(s.postsForChannel))
	mux.HandleFunc("POST /api/v4/teams/{team_id}/posts/search", s.auth(s.searchPosts))
	mux.HandleFunc("POST /api/v4/files", s.auth(s.uploadFiles))
	mux.HandleFunc("GET /api/v4/files/{file_id}", s.auth(s.getFile))
	mux.HandleFunc("GET /api/v4/files/{file_id}/info", s.auth(s.getFileInfo))
	mux.HandleFunc("GET /api/v4/license/client", s.clientLicense)
	mux.HandleFunc("POST /api/v4/license", s.auth(s.uploadLicense))
	mux.HandleFunc("DELETE /api/v4/license", s.auth(s.removeLicense))
	mux.HandleFunc("GET /api/v4/cluster/status", s.auth(s.clusterStatus))
	mux.HandleFunc("POST /api/v4/database/recycle", s.auth(s.recycleDB))
	mux.HandleFunc("POST /api/v4/jobs", s.auth(s.createJob))
	mux.HandleFunc("GET /api/v4/jobs/{job_id}", s.auth(s.getJob))
	mux.HandleFunc("GET /api/v4/jobs/type/{job_type}", s.auth(s.getJobsByType))
	if !local {
		mux.HandleFunc("GET /api/v4/websocket", s.websocket)
	} else { // the stand-in serves the config API to local mode only (mmctl --local)
		mux.HandleFunc("GET /api/v4/config", s.getConfig)
		mux.HandleFunc("PUT /api/v4/config/patch", s.patchConfig)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.writeErr(w, http.StatusNotFound, "api.context.404.app_error", "Sorry, we could not find the page.", "There doesn't appear to be an api call for the url='"+r.URL.Path+"'.")
	})
	if !local {
		mux.HandleFunc("/", s.static)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Requests.Add(1)
		w.Header().Set("X-Request-Id", mmid.New())
		w.Header().Set("X-Version-Id", s.VersionID())
		if local {
			r = r.WithContext(contextWithLocal(r))
		}
		mux.ServeHTTP(w, r)
	})
}

// static serves the webapp from client/ like the real server (index.html for unknown paths).
func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	dir := filepath.Join(filepath.Dir(filepath.Dir(config.DefaultPath())), "client")
	p := filepath.Join(dir, filepath.Clean("/"+r.URL.Path))
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		http.ServeFile(w, r, p)
		return
	}
	idx := filepath.Join(dir, "index.html")
	if _, err := os.Stat(idx); err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-cache, max-age=31556926, public")
	http.ServeFile(w, r, idx)
}

// ---- system ping ----

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	resp := map[string]any{
		"status":               "OK",
		"ActiveSearchBackend":  s.activeSearchBackend(),
		"AndroidLatestVersion": "",
		"AndroidMinVersion":    "",
		"IosLatestVersion":     "",
		"IosMinVersion":        "",
	}
	if r.URL.Query().Get("get_server_status") == "true" {
		resp["database_status"] = "OK"
		resp["filestore_status"] = "OK"
		if err := s.Store.HealthCheckWrite(); err != nil {
			s.Log.Log("error", "Unable to write to database.", "error", err.Error())
			resp["database_status"] = "UNHEALTHY"
			resp["status"] = "UNHEALTHY"
		}
		if err := s.fileStoreCheck(); err != nil {
			s.Log.Log("error", "Unable to write to file store.", "error", err.Error())
			resp["filestore_status"] = "UNHEALTHY"
			resp["status"] = "UNHEALTHY"
		}
		resp["CanReceiveNotifications"] = "unknown"
	}
	status := http.StatusOK
	if resp["status"] != "OK" {
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, resp)
}

func (s *Server) fileStoreCheck() error {
	if s.Files == nil {
		return errors.New("file store is not configured")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Files.Test(ctx)
}

// ---- auth ----

type session struct {
	SessionId string
	UserId    string
	Roles     string
	Local     bool
}

func (ss *session) isAdmin() bool {
	return ss.Local || strings.Contains(" "+ss.Roles+" ", " system_admin ")
}

type handler func(w http.ResponseWriter, r *http.Request, ss *session)

func tokenFrom(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		for _, p := range []string{"Bearer ", "bearer ", "Token ", "token "} {
			if strings.HasPrefix(h, p) {
				return strings.TrimSpace(h[len(p):]), false
			}
		}
	}
	if c, err := r.Cookie("MMAUTHTOKEN"); err == nil && c.Value != "" {
		return c.Value, true
	}
	if t := r.URL.Query().Get("access_token"); t != "" && r.Method == http.MethodGet {
		return t, false
	}
	return "", false
}

func (s *Server) sessionFor(token string) (*session, error) {
	if token == "" {
		return nil, errors.New("no token")
	}
	st, err := s.Store.GetSession(token)
	if err != nil {
		return nil, err
	}
	if st.ExpiresAt != 0 && st.ExpiresAt < time.Now().UnixMilli() {
		return nil, errors.New("expired")
	}
	u, err := s.Store.GetUserBy("Id", st.UserId)
	if err != nil || u.DeleteAt != 0 {
		return nil, errors.New("user gone")
	}
	return &session{SessionId: st.Id, UserId: u.Id, Roles: u.Roles}, nil
}

func (s *Server) auth(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if isLocal(r) {
			h(w, r, &session{Local: true, Roles: "system_admin system_user"})
			return
		}
		token, cookie := tokenFrom(r)
		if cookie && r.Method != http.MethodGet && r.Header.Get("X-Requested-With") != "XMLHttpRequest" {
			token = "" // the real server requires the CSRF header with cookie auth
		}
		ss, err := s.sessionFor(token)
		if err != nil {
			s.writeErr(w, http.StatusUnauthorized, "api.context.session_expired.app_error", "Invalid or expired session, please login again.", "token="+redact(token))
			return
		}
		h(w, r, ss)
	}
}

func redact(t string) string {
	if len(t) > 4 {
		return t[:4] + "..."
	}
	return ""
}

func (s *Server) forbidden(w http.ResponseWriter, perm string) {
	s.writeErr(w, http.StatusForbidden, "api.context.permissions.app_error", "You do not have the appropriate permissions.", "missing permission "+perm)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	return dec.Decode(v)
}

func sanitize(u *store.User) *store.User {
	c := *u
	c.Password = ""
	return &c
}

// ---- users ----

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var body struct {
		LoginId  string `json:"login_id"`
		Password string `json:"password"`
		Id       string `json:"id"`
		DeviceId string `json:"device_id"`
	}
	if err := decode(r, &body); err != nil || (body.LoginId == "" && body.Id == "") {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing login_id in request body.", "")
		return
	}
	var u *store.User
	var err error
	switch {
	case body.Id != "":
		u, err = s.Store.GetUserBy("Id", body.Id)
	case strings.Contains(body.LoginId, "@"):
		u, err = s.Store.GetUserBy("Email", strings.ToLower(body.LoginId))
	default:
		u, err = s.Store.GetUserBy("Username", strings.ToLower(body.LoginId))
	}
	if err == nil && u.DeleteAt == 0 && bcrypt.CompareHashAndPassword([]byte(u.Password), []byte(body.Password)) == nil {
		now := time.Now()
		ss := &store.Session{Id: mmid.New(), Token: mmid.New(), UserId: u.Id, Roles: u.Roles, CreateAt: now.UnixMilli(), ExpiresAt: now.Add(sessionLength).UnixMilli()}
		if err := s.Store.SaveSession(ss); err != nil {
			s.writeErr(w, http.StatusInternalServerError, "app.session.save.app_error", "Unable to save the session.", err.Error())
			return
		}
		if body.DeviceId != "" { // mobile apps log in with their device id
			s.Store.AttachDevice(ss.Id, body.DeviceId)
		}
		s.Logins.Add(1)
		maxAge := int(sessionLength / time.Second)
		http.SetCookie(w, &http.Cookie{Name: "MMAUTHTOKEN", Value: ss.Token, Path: "/", MaxAge: maxAge, HttpOnly: true})
		http.SetCookie(w, &http.Cookie{Name: "MMUSERID", Value: u.Id, Path: "/", MaxAge: maxAge})
		http.SetCookie(w, &http.Cookie{Name: "MMCSRF", Value: mmid.New(), Path: "/", MaxAge: maxAge})
		w.Header().Set("Token", ss.Token)
		writeJSON(w, http.StatusOK, sanitize(u))
		return
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.writeErr(w, http.StatusInternalServerError, "app.user.get_for_login.app_error", "Unable to find the user.", err.Error())
		return
	}
	s.LoginFails.Add(1)
	s.writeErr(w, http.StatusUnauthorized, "api.user.login.invalid_credentials_email_username", "Enter a valid email or username and/or password.", "")
}

func (s *Server) getMe(w http.ResponseWriter, r *http.Request, ss *session) {
	if ss.Local {
		s.writeErr(w, http.StatusNotImplemented, "api.context.local_origin_required.app_error", "This endpoint has no user in local mode.", "")
		return
	}
	u, err := s.Store.GetUserBy("Id", ss.UserId)
	if err != nil {
		s.writeErr(w, http.StatusNotFound, "app.user.missing_account.const", "Unable to find the user.", "")
		return
	}
	writeJSON(w, http.StatusOK, sanitize(u))
}

var (
	usernameRe = regexp.MustCompile(`^[a-z0-9.\-_]{3,22}$`)
	emailRe    = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	teamNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9\-]*[a-z0-9])?$`)
)

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, ss *session) {
	if !ss.isAdmin() {
		s.forbidden(w, "create_user")
		return
	}
	var body store.User
	if err := decode(r, &body); err != nil {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing user in request body.", err.Error())
		return
	}
	body.Username = strings.ToLower(body.Username)
	body.Email = strings.ToLower(body.Email)
	switch {
	case !usernameRe.MatchString(body.Username):
		s.writeErr(w, http.StatusBadRequest, "model.user.is_valid.username.app_error", "Username must begin with a letter, and contain between 3 to 22 lowercase characters made up of numbers, letters, and the symbols \".\", \"-\", and \"_\".", "")
		return
	case !emailRe.MatchString(body.Email):
		s.writeErr(w, http.StatusBadRequest, "model.user.is_valid.email.app_error", "Invalid email.", "")
		return
	case len(body.Password) < 8 || len(body.Password) > 72:
		s.writeErr(w, http.StatusBadRequest, "model.user.is_valid.pwd_length.app_error", "Your password must contain between 8 and 72 characters.", "")
		return
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(body.Password), 10)
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.user.save.app_error", "Unable to save the account.", err.Error())
		return
	}
	now := time.Now().UnixMilli()
	u := &store.User{Id: mmid.New(), CreateAt: now, UpdateAt: now, Username: body.Username, Password: string(hash), Email: body.Email,
		EmailVerified: ss.Local, Nickname: body.Nickname, FirstName: body.FirstName, LastName: body.LastName, Roles: "system_user", Locale: "en"}
	if err := s.Store.SaveUser(u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			if _, e := s.Store.GetUserBy("Username", u.Username); e == nil {
				s.writeErr(w, http.StatusBadRequest, "app.user.save.username_exists.app_error", "An account with that username already exists.", "")
			} else {
				s.writeErr(w, http.StatusBadRequest, "app.user.save.email_exists.app_error", "An account with that email already exists.", "")
			}
			return
		}
		s.writeErr(w, http.StatusInternalServerError, "app.user.save.app_error", "Unable to save the account.", err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, sanitize(u))
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, ss *session) {
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if per <= 0 || per > 200 {
		per = 60
	}
	users, err := s.Store.ListUsers(page*per, per)
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.user.get_profiles.app_error", "Unable to find users.", err.Error())
		return
	}
	out := make([]*store.User, 0, len(users))
	for _, u := range users {
		out = append(out, sanitize(u))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getUser(col, param string) handler {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		u, err := s.Store.GetUserBy(col, strings.ToLower(r.PathValue(param)))
		if col == "Id" {
			u, err = s.Store.GetUserBy(col, r.PathValue(param))
		}
		if errors.Is(err, store.ErrNotFound) {
			s.writeErr(w, http.StatusNotFound, "app.user.missing_account.const", "Unable to find the user.", "")
			return
		} else if err != nil {
			s.writeErr(w, http.StatusInternalServerError, "app.user.get.app_error", "Unable to get the user.", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, sanitize(u))
	}
}

func (s *Server) updateRoles(w http.ResponseWriter, r *http.Request, ss *session) {
	if !ss.isAdmin() {
		s.forbidden(w, "manage_roles")
		return
	}
	var body struct {
		Roles string `json:"roles"`
	}
	if err := decode(r, &body); err != nil || body.Roles == "" {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing roles in request body.", "")
		return
	}
	for _, role := range strings.Fields(body.Roles) {
		if role != "system_user" && role != "system_admin" && !strings.HasPrefix(role, "system_") {
			s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing roles in request body.", "unknown role "+role)
			return
		}
	}
	if _, err := s.Store.GetUserBy("Id", r.PathValue("user_id")); err != nil {
		s.writeErr(w, http.StatusNotFound, "app.user.missing_account.const", "Unable to find the user.", "")
		return
	}
	if err := s.Store.UpdateUserRoles(r.PathValue("user_id"), strings.Join(strings.Fields(body.Roles), " ")); err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.user.update.app_error", "Unable to update the user.", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
}

// patchUser is PUT /users/{id}/patch by the user or a system admin: the profile fields
// the stand-in keeps (nickname, first_name, last_name) are changed; notify_props are
// checked and accepted but not kept, since the stand-in pushes every @mention to the
// user's devices, as the real server does with push "mention" and push_status "online".
func (s *Server) patchUser(w http.ResponseWriter, r *http.Request, ss *session) {
	var body struct {
		Nickname    *string           `json:"nickname"`
		FirstName   *string           `json:"first_name"`
		LastName    *string           `json:"last_name"`
		NotifyProps map[string]string `json:"notify_props"`
	}
	if err := decode(r, &body); err != nil {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing user in request body.", err.Error())
		return
	}
	u, err := s.Store.GetUserBy("Id", r.PathValue("user_id"))
	if err != nil {
		s.writeErr(w, http.StatusNotFound, "app.user.missing_account.const", "Unable to find the user.", "")
		return
	}
	if !ss.isAdmin() && ss.UserId != u.Id {
		s.forbidden(w, "edit_other_users")
		return
	}
	for key, allowed := range map[string][]string{"push": {"all", "mention", "none"}, "push_status": {"online", "away", "offline"},
		"desktop": {"all", "mention", "none"}, "email": {"true", "false"}, "channel": {"true", "false"}} {
		if v, ok := body.NotifyProps[key]; ok && !contains(allowed, v) {
			s.writeErr(w, http.StatusBadRequest, "model.user.is_valid.notify_props.app_error", "Invalid notify props.", key+"="+v)
			return
		}
	}
	for _, f := range []struct {
		value *string
		field *string
	}{{body.Nickname, &u.Nickname}, {body.FirstName, &u.FirstName}, {body.LastName, &u.LastName}} {
		if f.value != nil {
			*f.field = *f.value
		}
	}
	if err := s.Store.UpdateUserProfile(u); err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.user.update.app_error", "Unable to update the user.", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, sanitize(u))
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// updatePassword is PUT /users/{id}/password: the user with its current password, or a
// system admin; `already_hashed` (admins only, as mmctl's --hashed sends it) stores a bcrypt
// hash as given.
func (s *Server) updatePassword(w http.ResponseWriter, r *http.Request, ss *session) {
	var body struct {
		CurrentPassword string `json:"current_password"`
		NewPassword     string `json:"new_password"`
		AlreadyHashed   string `json:"already_hashed"`
	}
	if err := decode(r, &body); err != nil || body.NewPassword == "" {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing new_password in request body.", "")
		return
	}
	u, err := s.Store.GetUserBy("Id", r.PathValue("user_id"))
	if err != nil {
		s.writeErr(w, http.StatusNotFound, "app.user.missing_account.const", "Unable to find the user.", "")
		return
	}
	hash := body.NewPassword
	if body.AlreadyHashed == "true" {
		if !ss.isAdmin() {
			s.forbidden(w, "manage_system")
			return
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			s.writeErr(w, http.StatusBadRequest, "api.user.update_password.hashed.app_error", "The hashed password is not a bcrypt hash.", "")
			return
		}
	} else {
		if !ss.isAdmin() && (ss.UserId != u.Id || bcrypt.CompareHashAndPassword([]byte(u.Password), []byte(body.CurrentPassword)) != nil) {
			s.writeErr(w, http.StatusForbidden, "api.user.update_password.incorrect.app_error", "The \"Current Password\" you entered is incorrect.", "")
			return
		}
		if len(body.NewPassword) < 8 || len(body.NewPassword) > 72 {
			s.writeErr(w, http.StatusBadRequest, "model.user.is_valid.pwd.app_error", "Your password must contain between 8 and 72 characters.", "")
			return
		}
		b, _ := bcrypt.GenerateFromPassword([]byte(body.NewPassword), 10)
		hash = string(b)
	}
	if err := s.Store.UpdateUserPassword(u.Id, hash); err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.user.update_password.app_error", "Unable to update the password.", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
}

// ---- teams and channels ----

func (s *Server) createTeam(w http.ResponseWriter, r *http.Request, ss *session) {
	var body store.Team
	if err := decode(r, &body); err != nil {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing team in request body.", err.Error())
		return
	}
	if body.Type == "" {
		body.Type = "O"
	}
	switch {
	case len(body.Name) < 2 || len(body.Name) > 64 || !teamNameRe.MatchString(body.Name):
		s.writeErr(w, http.StatusBadRequest, "model.team.is_valid.url.app_error", "Team URL must be at least 2 characters, lowercase letters, numbers and dashes.", "")
		return
	case body.DisplayName == "" || len(body.DisplayName) > 64:
		s.writeErr(w, http.StatusBadRequest, "model.team.is_valid.name.app_error", "Invalid name.", "")
		return
	case body.Type != "O" && body.Type != "I":
		s.writeErr(w, http.StatusBadRequest, "model.team.is_valid.type.app_error", "Invalid type.", "")
		return
	}
	now := time.Now().UnixMilli()
	t := &store.Team{Id: mmid.New(), CreateAt: now, UpdateAt: now, DisplayName: body.DisplayName, Name: body.Name,
		Description: body.Description, Email: body.Email, Type: body.Type, AllowOpenInvite: body.Type == "O"}
	if err := s.Store.SaveTeam(t); err != nil {
		if errors.Is(err, store.ErrConflict) {
			s.writeErr(w, http.StatusBadRequest, "app.team.save.existing.app_error", "A team with that name already exists.", "")
			return
		}
		s.writeErr(w, http.StatusInternalServerError, "app.team.save.app_error", "Unable to save the team.", err.Error())
		return
	}
	if !ss.Local {
		s.Store.AddTeamMember(t.Id, ss.UserId) // the creator joins, as in the real server
	}
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) listTeams(w http.ResponseWriter, r *http.Request, ss *session) {
	teams, err := s.Store.ListTeams()
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.team.get_all.app_error", "Unable to get teams.", err.Error())
		return
	}
	out := []*store.Team{}
	for _, t := range teams {
		if ss.isAdmin() || t.AllowOpenInvite {
			out = append(out, t)
		} else if ok, _ := s.Store.IsTeamMember(t.Id, ss.UserId); ok {
			out = append(out, t)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) canViewTeam(t *store.Team, ss *session) bool {
	if ss.isAdmin() || t.AllowOpenInvite {
		return true
	}
	ok, _ := s.Store.IsTeamMember(t.Id, ss.UserId)
	return ok
}

func (s *Server) getTeam(col, param string) handler {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		t, err := s.Store.GetTeamBy(col, r.PathValue(param))
		if errors.Is(err, store.ErrNotFound) {
			s.writeErr(w, http.StatusNotFound, "app.team.get_by_name.missing.app_error", "Unable to find the existing team.", "")
			return
		} else if err != nil {
			s.writeErr(w, http.StatusInternalServerError, "app.team.get.app_error", "Unable to get the team.", err.Error())
			return
		}
		if !s.canViewTeam(t, ss) {
			s.forbidden(w, "view_team")
			return
		}
		writeJSON(w, http.StatusOK, t)
	}
}

func (s *Server) addTeamMember(w http.ResponseWriter, r *http.Request, ss *session) {
	var body struct {
		TeamId string `json:"team_id"`
		UserId string `json:"user_id"`
	}
	if err := decode(r, &body); err != nil || body.UserId == "" || body.TeamId != r.PathValue("team_id") {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing team_id/user_id in request body.", "")
		return
	}
	t, err := s.Store.GetTeamBy("Id", body.TeamId)
	if err != nil {
		s.writeErr(w, http.StatusNotFound, "app.team.get.find.app_error", "Unable to find the existing team.", "")
		return
	}
	if !ss.isAdmin() && !(t.AllowOpenInvite && body.UserId == ss.UserId) {
		s.forbidden(w, "add_user_to_team")
		return
	}
	if _, err := s.Store.GetUserBy("Id", body.UserId); err != nil {
		s.writeErr(w, http.StatusNotFound, "app.user.missing_account.const", "Unable to find the user.", "")
		return
	}
	if err := s.Store.AddTeamMember(body.TeamId, body.UserId); err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.team.save_member.save.app_error", "Unable to save the team member.", err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"team_id": body.TeamId, "user_id": body.UserId, "roles": "team_user", "delete_at": 0, "scheme_user": true, "scheme_admin": false, "scheme_guest": false})
}

func (s *Server) getChannelByName(w http.ResponseWriter, r *http.Request, ss *session) {
	t, err := s.Store.GetTeamBy("Id", r.PathValue("team_id"))
	if err != nil {
		s.writeErr(w, http.StatusNotFound, "app.team.get.find.app_error", "Unable to find the existing team.", "")
		return
	}
	member, _ := s.Store.IsTeamMember(t.Id, ss.UserId)
	if !ss.isAdmin() && !member {
		s.forbidden(w, "view_team")
		return
	}
	c, err := s.Store.GetChannelByName(t.Id, r.PathValue("channel_name"))
	if err != nil {
		s.writeErr(w, http.StatusNotFound, "app.channel.get_by_name.missing.app_error", "Channel does not exist.", "")
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// ---- posts ----

func (s *Server) canPostOrRead(c *store.Channel, ss *session, write bool) bool {
	if ss.isAdmin() {
		return true
	}
	if ok, _ := s.Store.IsChannelMember(c.Id, ss.UserId); ok {
		return true
	}
	if !write && c.Type == "O" {
		ok, _ := s.Store.IsTeamMember(c.TeamId, ss.UserId)
		return ok
	}
	return false
}

func (s *Server) createPost(w http.ResponseWriter, r *http.Request, ss *session) {
	if ss.Local {
		s.writeErr(w, http.StatusNotImplemented, "api.context.local_origin_required.app_error", "Posting needs a user session.", "")
		return
	}
	var body store.Post
	if err := decode(r, &body); err != nil {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing post in request body.", err.Error())
		return
	}
	if !mmid.Valid(body.ChannelId) {
		s.writeErr(w, http.StatusBadRequest, "model.post.is_valid.channel_id.app_error", "Invalid channel id.", "")
		return
	}
	if len(body.Message) > 16383 {
		s.writeErr(w, http.StatusBadRequest, "model.post.is_valid.msg.app_error", "Invalid message.", "")
		return
	}
	c, err := s.Store.GetChannel(body.ChannelId)
	if err != nil {
		s.forbidden(w, "create_post")
		return
	}
	if !s.canPostOrRead(c, ss, true) {
		s.forbidden(w, "create_post")
		return
	}
	if body.RootId != "" {
		root, _, err := s.Store.GetPost(body.RootId)
		if err != nil || root.ChannelId != c.Id {
			s.writeErr(w, http.StatusBadRequest, "api.post.create_post.root_id.app_error", "Invalid RootId parameter.", "")
			return
		}
		if root.RootId != "" {
			body.RootId = root.RootId // replies thread on the root, as in the real server
		}
	}
	if len(body.FileIds) > 10 {
		s.writeErr(w, http.StatusBadRequest, "model.post.is_valid.file_ids.app_error", "Invalid file ids.", "")
		return
	}
	var files []*store.FileInfo
	for _, id := range body.FileIds {
		fi, err := s.Store.GetFileInfo(id)
		if err != nil || fi.CreatorId != ss.UserId || fi.ChannelId != c.Id || fi.PostId != "" {
			s.writeErr(w, http.StatusBadRequest, "api.post.create_post.file_ids.app_error", "Invalid file ids.", id)
			return
		}
		files = append(files, fi)
	}
	now := time.Now().UnixMilli()
	p := &store.Post{Id: mmid.New(), CreateAt: now, UpdateAt: now, UserId: ss.UserId, ChannelId: c.Id, RootId: body.RootId,
		Message: body.Message, Type: "", Props: map[string]any{}, PendingPostId: body.PendingPostId, FileIds: body.FileIds, Metadata: map[string]any{}}
	if body.Props != nil {
		p.Props = body.Props
	}
	if err := s.Store.SavePost(p); err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.post.save.app_error", "Unable to save the post.", err.Error())
		return
	}
	if len(files) > 0 {
		s.Store.AttachFilesToPost(p.Id, ss.UserId, body.FileIds)
		for _, f := range files {
			f.PostId = p.Id
		}
		p.Metadata["files"] = files
	}
	s.PostsCreated.Add(1)
	if s.Hub != nil {
		s.Hub.BroadcastPosted(s, c, p)
	}
	// Indexed in the background, as the real server's search layer does (runIndexFn): a
	// search cluster that is slow or failing over never holds up the post.
	go s.indexPost(p, c)
	if u, err := s.Store.GetUserBy("Id", ss.UserId); err == nil {
		s.sendPushes(c, p, u)
	}
	writeJSON(w, http.StatusCreated, p)
}

func (s *Server) getPost(w http.ResponseWriter, r *http.Request, ss *session) {
	p, from, err := s.Store.GetPost(r.PathValue("post_id"))
	w.Header().Set("X-Standin-Read-From", from) // stand-in only: which database answered
	if errors.Is(err, store.ErrNotFound) {
		s.writeErr(w, http.StatusNotFound, "app.post.get.app_error", "Unable to get the post.", "")
		return
	} else if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.post.get.app_error", "Unable to get the post.", err.Error())
		return
	}
	c, err := s.Store.GetChannel(p.ChannelId)
	if err != nil || !s.canPostOrRead(c, ss, false) {
		s.forbidden(w, "read_channel")
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// getConfig returns the stored config (local mode: unsanitized, as the real server).
func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	raw, err := config.ReadStored(s.Src)
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "api.config.get_config.app_error", "Unable to read the config.", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(raw)
}

// patchConfig merges the body into the stored config. Like the real server,
// settings read at start-up (listeners, SqlSettings) take effect on a restart.
func (s *Server) patchConfig(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
	if err != nil {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing config in request body.", err.Error())
		return
	}
	out, changed, err := config.PatchStored(s.Src, body)
	var invalid *config.InvalidError
	if errors.As(err, &invalid) {
		s.writeErr(w, http.StatusBadRequest, "model.config.is_valid.app_error", "Invalid config.", config.RedactDSN(err.Error()))
		return
	}
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "api.config.update_config.app_error", "Unable to save the config.", config.RedactDSN(err.Error()))
		return
	}
	if changed {
		s.Log.Log("info", "Config patched", "source", s.Src.Kind, "path", s.Src.Path)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}
