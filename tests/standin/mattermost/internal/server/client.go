// TEST STAND-IN for the part of the real API v4 that client libraries and
// bots call to bootstrap (mattermostdriver, mmpy_bot, the mobile and desktop
// apps): the user's teams, team members and channels, channels by name, post
// lists (order + posts map, page/per_page/since), threads by root_id, logout,
// the session's mobile device id, profile images, and post search (through
// Elasticsearch/OpenSearch when it is active, else the database, as the real
// server falls back).
package server

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"strconv"
	"strings"
	"time"

	"mmdeploy.test/standin/mattermost/internal/license"
	"mmdeploy.test/standin/mattermost/internal/search"
	"mmdeploy.test/standin/mattermost/internal/store"
)

// userParam resolves {user_id}, where "me" is the session's user.
func userParam(r *http.Request, ss *session) string {
	id := r.PathValue("user_id")
	if id == "me" {
		return ss.UserId
	}
	return id
}

func (s *Server) selfOrAdmin(w http.ResponseWriter, r *http.Request, ss *session) (string, bool) {
	id := userParam(r, ss)
	if id != ss.UserId && !ss.isAdmin() {
		s.forbidden(w, "edit_other_users")
		return "", false
	}
	return id, true
}

func (s *Server) userSubresource(w http.ResponseWriter, r *http.Request, ss *session) {
	parts := strings.Split(r.PathValue("rest"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "image":
		s.userImage(w, r, ss)
	case len(parts) == 1 && parts[0] == "teams":
		s.teamsForUser(w, r, ss)
	case len(parts) == 2 && parts[0] == "teams" && parts[1] == "members":
		s.teamMembersForUser(w, r, ss)
	case len(parts) == 3 && parts[0] == "teams" && parts[2] == "channels":
		r.SetPathValue("team_id", parts[1])
		s.channelsForUser(w, r, ss)
	default:
		s.writeErr(w, http.StatusNotFound, "api.context.404.app_error", "Sorry, we could not find the page.", "There doesn't appear to be an api call for the url='"+r.URL.Path+"'.")
	}
}

func (s *Server) teamsForUser(w http.ResponseWriter, r *http.Request, ss *session) {
	id, ok := s.selfOrAdmin(w, r, ss)
	if !ok {
		return
	}
	teams, err := s.Store.TeamsForUser(id)
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.team.get_all.app_error", "Unable to get teams.", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, teams)
}

func (s *Server) teamMembersForUser(w http.ResponseWriter, r *http.Request, ss *session) {
	id, ok := s.selfOrAdmin(w, r, ss)
	if !ok {
		return
	}
	ms, err := s.Store.TeamMembersForUser(id)
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.team.get_members.app_error", "Unable to get the team members.", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ms)
}

func (s *Server) channelsForUser(w http.ResponseWriter, r *http.Request, ss *session) {
	id, ok := s.selfOrAdmin(w, r, ss)
	if !ok {
		return
	}
	cs, err := s.Store.ChannelsForUser(r.PathValue("team_id"), id)
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.channel.get_channels.get.app_error", "Unable to get the channels.", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, cs)
}

func (s *Server) channelByTeamAndName(w http.ResponseWriter, r *http.Request, ss *session) {
	t, err := s.Store.GetTeamBy("Name", r.PathValue("team_name"))
	if err != nil {
		s.writeErr(w, http.StatusNotFound, "app.team.get_by_name.missing.app_error", "Unable to find the existing team.", "")
		return
	}
	r.SetPathValue("team_id", t.Id)
	s.getChannelByName(w, r, ss)
}

func (s *Server) getChannel(w http.ResponseWriter, r *http.Request, ss *session) {
	c, err := s.Store.GetChannel(r.PathValue("channel_id"))
	if err != nil {
		s.writeErr(w, http.StatusNotFound, "app.channel.get.existing.app_error", "Unable to find the existing channel.", "")
		return
	}
	if !s.canPostOrRead(c, ss, false) {
		s.forbidden(w, "read_channel")
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// postList is the real model.PostList JSON.
type postList struct {
	Order      []string               `json:"order"`
	Posts      map[string]*store.Post `json:"posts"`
	NextPostId string                 `json:"next_post_id"`
	PrevPostId string                 `json:"prev_post_id"`
	HasNext    bool                   `json:"has_next"`
}

func newPostList(posts []*store.Post) *postList {
	pl := &postList{Order: []string{}, Posts: map[string]*store.Post{}}
	for _, p := range posts {
		pl.Order = append(pl.Order, p.Id)
		pl.Posts[p.Id] = p
	}
	return pl
}

func (s *Server) postsForChannel(w http.ResponseWriter, r *http.Request, ss *session) {
	c, err := s.Store.GetChannel(r.PathValue("channel_id"))
	if err != nil || !s.canPostOrRead(c, ss, false) {
		s.forbidden(w, "read_channel")
		return
	}
	q := r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	per, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || per <= 0 {
		per = 60
	}
	if per > 200 {
		per = 200
	}
	since, _ := strconv.ParseInt(q.Get("since"), 10, 64)
	posts, err := s.Store.PostsForChannel(c.Id, page*per, per, since)
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.post.get_posts.app_error", "Unable to get the posts.", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, newPostList(posts))
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	if token, _ := tokenFrom(r); token != "" {
		s.Store.DeleteSession(token)
	}
	for _, name := range []string{"MMAUTHTOKEN", "MMUSERID", "MMCSRF"} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1})
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
}

func (s *Server) attachDevice(w http.ResponseWriter, r *http.Request, ss *session) {
	var body struct {
		DeviceId string `json:"device_id"`
	}
	if err := decode(r, &body); err != nil || body.DeviceId == "" || !strings.Contains(body.DeviceId, ":") {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing device_id in request body.", "")
		return
	}
	if ss.SessionId == "" {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "This session cannot carry a device.", "")
		return
	}
	if err := s.Store.AttachDevice(ss.SessionId, body.DeviceId); err != nil {
		s.writeErr(w, http.StatusInternalServerError, "api.user.attach_device.app_error", "Unable to attach the device.", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
}

// userImage is a generated default avatar (a one-colour PNG per user).
func (s *Server) userImage(w http.ResponseWriter, r *http.Request, ss *session) {
	u, err := s.Store.GetUserBy("Id", userParam(r, ss))
	if err != nil {
		s.writeErr(w, http.StatusNotFound, "app.user.missing_account.const", "Unable to find the user.", "")
		return
	}
	img := image.NewRGBA(image.Rect(0, 0, 128, 128))
	h := 0
	for _, b := range []byte(u.Id) {
		h = h*31 + int(b)
	}
	col := color.RGBA{uint8(h), uint8(h >> 8), uint8(h >> 16), 255}
	for y := 0; y < 128; y++ {
		for x := 0; x < 128; x++ {
			img.Set(x, y, col)
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "max-age=86400, private")
	w.Write(buf.Bytes())
}

// ---- search ----

// startSearch connects to Elasticsearch/OpenSearch when the license and
// ElasticsearchSettings allow it.
func (s *Server) startSearch() {
	es := &s.Cfg.ElasticsearchSettings
	if !*es.EnableIndexing && !*es.EnableSearching {
		return
	}
	if !license.Has(s.License(), "elastic_search") {
		s.Log.Log("warn", "ElasticsearchSettings.EnableIndexing is true but there is no license for Elasticsearch/OpenSearch: search stays on the database", "backend", *es.Backend)
		return
	}
	e, err := search.New(s.Cfg)
	if err != nil {
		s.Log.Log("error", "Search engine settings are invalid: search stays on the database", "error", err.Error())
		return
	}
	v, err := e.Check(context.Background())
	if err != nil {
		s.Log.Log("error", "Cannot reach the search engine (indexing will be retried per post; search falls back to the database until it answers)", "backend", e.Backend, "url", *es.ConnectionURL, "error", err.Error())
	} else {
		s.Log.Log("info", "Search engine is ready", "backend", e.Backend, "version", v)
	}
	s.Search = e
}

// activeSearchBackend is ping's ActiveSearchBackend.
func (s *Server) activeSearchBackend() string {
	if s.Search != nil && s.Search.Searching {
		return s.Search.Backend
	}
	return "database"
}

func (s *Server) indexPost(p *store.Post, c *store.Channel) {
	if s.Search == nil || !s.Search.Indexing {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Search.IndexPost(ctx, p, c.TeamId); err != nil {
		s.Log.Log("error", "Failed to index the post", "post_id", p.Id, "backend", s.Search.Backend, "error", err.Error())
		return
	}
	s.PostsIndexed.Add(1)
}

func (s *Server) searchPosts(w http.ResponseWriter, r *http.Request, ss *session) {
	var body struct {
		Terms         string `json:"terms"`
		IsOrSearch    bool   `json:"is_or_search"`
		Page, PerPage int
	}
	if err := decode(r, &body); err != nil || strings.TrimSpace(body.Terms) == "" {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing terms in request body.", "")
		return
	}
	teamID := r.PathValue("team_id")
	channels, err := s.Store.ChannelIDsForUser(teamID, ss.UserId)
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.post.search.app_error", "Error searching posts.", err.Error())
		return
	}
	terms := search.Terms(body.Terms)
	var posts []*store.Post
	from := "database"
	if s.Search != nil && s.Search.Searching {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		ids, err := s.Search.SearchPosts(ctx, terms, channels, 100)
		cancel()
		if err == nil {
			posts, err = s.Store.PostsByIDs(ids)
			from = s.Search.Backend
		}
		if err != nil {
			s.Log.Log("error", "Search engine query failed; falling back to the database", "error", err.Error())
			posts, from = nil, "database"
		}
	}
	if from == "database" {
		posts, err = s.Store.SearchPosts(channels, terms, 100)
		if err != nil {
			s.writeErr(w, http.StatusInternalServerError, "app.post.search.app_error", "Error searching posts.", err.Error())
			return
		}
	}
	w.Header().Set("X-Standin-Search-Backend", from) // stand-in only: which engine answered
	pl := newPostList(posts)
	writeJSON(w, http.StatusOK, map[string]any{"order": pl.Order, "posts": pl.Posts, "next_post_id": "", "prev_post_id": "",
		"has_next": false, "matches": nil})
}

var errBadRoot = errors.New("bad root")
