// TEST STAND-IN for the real Mattermost server's websocket (used because the
// Mattermost release cannot be downloaded on the test machines and the server
// is AGPL). Reproduced boundaries: GET /api/v4/websocket upgrade, auth by the
// session token (Authorization header or MMAUTHTOKEN cookie) or by the
// `authentication_challenge` action, the `hello` event after auth, `ping`
// action replies, and `posted` events to channel members.
package server

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mattermost/mattermost/server/public/model"

	"mmdeploy.test/standin/mattermost/internal/mmid"
	"mmdeploy.test/standin/mattermost/internal/store"
)

type wsConn struct {
	id     string
	userID atomic.Value // string
	conn   *websocket.Conn
	send   chan []byte
	seq    atomic.Int64
}

// Hub tracks websocket connections.
type Hub struct {
	mu         sync.Mutex
	conns      map[*wsConn]bool
	Broadcasts atomic.Int64
}

func NewHub() *Hub { return &Hub{conns: map[*wsConn]bool{}} }

// Count returns the number of open websocket connections.
func (h *Hub) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	// The real server checks Origin against SiteURL (AllowCorsFrom); the
	// stand-in accepts any origin (verify tools send none).
	CheckOrigin: func(r *http.Request) bool { return true },
}

func (s *Server) websocket(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade already wrote the HTTP error
	}
	wc := &wsConn{id: mmid.New(), conn: c, send: make(chan []byte, 64)}
	wc.userID.Store("")
	s.Hub.mu.Lock()
	s.Hub.conns[wc] = true
	s.Hub.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		s.Hub.mu.Lock()
		delete(s.Hub.conns, wc)
		s.Hub.mu.Unlock()
		c.Close()
	}()
	go wc.writer(ctx)
	if token, _ := tokenFrom(r); token != "" {
		if ss, err := s.sessionFor(token); err == nil {
			wc.userID.Store(ss.UserId)
			s.hello(wc)
		}
	}
	c.SetReadLimit(1 << 16)
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		var req struct {
			Seq    int64          `json:"seq"`
			Action string         `json:"action"`
			Data   map[string]any `json:"data"`
		}
		if json.Unmarshal(data, &req) != nil {
			continue
		}
		switch {
		case req.Action == "authentication_challenge":
			tok, _ := req.Data["token"].(string)
			ss, err := s.sessionFor(tok)
			if err != nil {
				wc.reply(req.Seq, "FAIL", nil, map[string]any{"id": "api.web_socket_router.not_authenticated.app_error", "message": "Not authenticated", "status_code": 401})
				continue
			}
			first := wc.userID.Load().(string) == ""
			wc.userID.Store(ss.UserId)
			wc.reply(req.Seq, "OK", nil, nil)
			if first {
				s.hello(wc)
			}
		case wc.userID.Load().(string) == "":
			wc.reply(req.Seq, "FAIL", nil, map[string]any{"id": "api.web_socket_router.not_authenticated.app_error", "message": "Not authenticated", "status_code": 401})
		case req.Action == "ping":
			wc.reply(req.Seq, "OK", map[string]any{"text": "pong", "version": s.VersionID(), "server_time": time.Now().UnixMilli(), "node_id": s.NodeID}, nil)
		default:
			wc.reply(req.Seq, "FAIL", nil, map[string]any{"id": "api.web_socket_router.bad_action.app_error", "message": "Unknown action", "status_code": 501})
		}
	}
}

func (wc *wsConn) writer(ctx context.Context) {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-wc.send:
			wc.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if wc.conn.WriteMessage(websocket.TextMessage, b) != nil {
				return
			}
		case <-tick.C:
			wc.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second))
		}
	}
}

func (wc *wsConn) push(v any) {
	b, _ := json.Marshal(v)
	select {
	case wc.send <- b:
	default: // slow client: drop, as the real hub does after its queue fills
	}
}

func (wc *wsConn) reply(seq int64, status string, data, appErr map[string]any) {
	m := map[string]any{"status": status, "seq_reply": seq}
	if data != nil {
		m["data"] = data
	}
	if appErr != nil {
		m["error"] = appErr
	}
	wc.push(m)
}

func (wc *wsConn) event(name string, data map[string]any, broadcast map[string]any) {
	wc.push(map[string]any{"event": name, "data": data, "broadcast": broadcast, "seq": wc.seq.Add(1) - 1})
}

func (s *Server) hello(wc *wsConn) {
	host, _ := os.Hostname()
	wc.event("hello", map[string]any{"connection_id": wc.id, "server_version": s.VersionID(), "server_hostname": host},
		map[string]any{"omit_users": nil, "user_id": wc.userID.Load().(string), "channel_id": "", "team_id": "", "connection_id": "", "omit_connection_id": ""})
}

// wsEvent is the real WebSocketEvent JSON (event, data, broadcast); it is
// also what a "publish" cluster message carries to the other nodes.
type wsEvent struct {
	Event     string         `json:"event"`
	Data      map[string]any `json:"data"`
	Broadcast wsBroadcast    `json:"broadcast"`
}

type wsBroadcast struct {
	OmitUsers        map[string]bool `json:"omit_users"`
	UserId           string          `json:"user_id"`
	ChannelId        string          `json:"channel_id"`
	TeamId           string          `json:"team_id"`
	ConnectionId     string          `json:"connection_id"`
	OmitConnectionId string          `json:"omit_connection_id"`
}

// BroadcastPosted sends a `posted` event to the channel's members connected
// here and, in cluster mode, to every other node (a "publish" cluster message),
// as the real server's hub does.
func (h *Hub) BroadcastPosted(s *Server, c *store.Channel, p *store.Post) {
	sender := ""
	if u, err := s.Store.GetUserBy("Id", p.UserId); err == nil {
		sender = "@" + u.Username
	}
	pj, _ := json.Marshal(p)
	ev := &wsEvent{Event: "posted", Data: map[string]any{"channel_display_name": c.DisplayName, "channel_name": c.Name, "channel_type": c.Type,
		"post": string(pj), "sender_name": sender, "team_id": c.TeamId, "set_online": true},
		Broadcast: wsBroadcast{ChannelId: c.Id}}
	h.deliver(s, ev)
	if s.Cluster != nil {
		data, _ := json.Marshal(ev)
		s.Cluster.Send(&model.ClusterMessage{Event: model.ClusterEventPublish, SendType: model.ClusterSendBestEffort, Data: data})
	}
}

// deliver sends an event to the matching connections of this node.
func (h *Hub) deliver(s *Server, ev *wsEvent) {
	var members map[string]bool
	if ev.Broadcast.ChannelId != "" {
		m, err := s.Store.ChannelMemberIDs(ev.Broadcast.ChannelId)
		if err != nil {
			s.Log.Log("warn", "Websocket: cannot read channel members", "error", err.Error())
			return
		}
		members = m
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for wc := range h.conns {
		uid := wc.userID.Load().(string)
		if uid == "" || (members != nil && !members[uid]) || (ev.Broadcast.UserId != "" && ev.Broadcast.UserId != uid) || ev.Broadcast.OmitUsers[uid] {
			continue
		}
		h.Broadcasts.Add(1)
		wc.event(ev.Event, ev.Data, map[string]any{"omit_users": ev.Broadcast.OmitUsers, "user_id": ev.Broadcast.UserId,
			"channel_id": ev.Broadcast.ChannelId, "team_id": ev.Broadcast.TeamId, "connection_id": "", "omit_connection_id": ""})
	}
}
