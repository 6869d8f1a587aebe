// TEST STAND-IN for the real server's push notifications: with
// EmailSettings.SendPushNotifications and PushNotificationServer set, a post
// that @mentions a channel member sends, for each of that user's sessions with
// a device id ("platform:token", attached at login or with PUT
// /api/v4/users/sessions/device), the real model.PushNotification JSON to
// {PushNotificationServer}/api/v1/send_push (the push proxy's API).
// PushNotificationContents: "full" sends the message, "generic" only the
// sender, "id_loaded" (with a license granting it) only ids.
// Divergences: no badge counts, acks or CRT handling; the stand-in never sends
// to Mattermost's hosted push services (*.mattermost.com).
package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"mmdeploy.test/standin/mattermost/internal/license"
	"mmdeploy.test/standin/mattermost/internal/mmid"
	"mmdeploy.test/standin/mattermost/internal/store"
)

var mentionRe = regexp.MustCompile(`@([a-z0-9.\-_]+)`)

// Mentions returns the usernames @mentioned in a message.
func Mentions(msg string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range mentionRe.FindAllStringSubmatch(strings.ToLower(msg), -1) {
		name := strings.TrimRight(m[1], ".-_")
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

var pushClient = &http.Client{Timeout: 10 * time.Second}

func (s *Server) sendPushes(c *store.Channel, p *store.Post, sender *store.User) {
	e := &s.Cfg.EmailSettings
	server := strings.TrimRight(*e.PushNotificationServer, "/")
	if !*e.SendPushNotifications || server == "" {
		return
	}
	if u, err := url.Parse(server); err != nil || u.Host == "" || strings.HasSuffix(u.Hostname(), "mattermost.com") {
		s.Log.Log("warn", "Push notifications: the stand-in sends only to a push proxy you run (not to Mattermost's hosted services)", "server", server)
		return
	}
	members, err := s.Store.ChannelMemberIDs(c.Id)
	if err != nil {
		return
	}
	diag, _ := s.Store.GetSystem("DiagnosticId")
	for _, name := range Mentions(p.Message) {
		u, err := s.Store.GetUserBy("Username", name)
		if err != nil || u.Id == p.UserId || !members[u.Id] {
			continue
		}
		devices, err := s.Store.DeviceIDs(u.Id)
		if err != nil {
			continue
		}
		for _, d := range devices {
			pn := &model.PushNotification{Version: model.PushMessageV2, Type: model.PushTypeMessage,
				ServerId: diag, PostId: p.Id, TeamId: c.TeamId, ChannelId: c.Id, RootId: p.RootId, ChannelName: c.DisplayName,
				SenderId: sender.Id, SenderName: sender.Username, Category: model.CategoryCanReply, Sound: "none", Badge: 1, AckId: mmid.New()}
			switch *e.PushNotificationContents {
			case model.IdLoadedNotification:
				if license.Has(s.License(), "id_loaded") {
					pn.IsIdLoaded = true
					pn.Message = "You've received a new message."
					pn.SenderName, pn.ChannelName = "", ""
				} else {
					pn.Message = sender.Username + " mentioned you."
				}
			case model.GenericNotification, model.GenericNoChannelNotification:
				pn.Message = sender.Username + " mentioned you."
			default:
				pn.Message = sender.Username + ": " + p.Message
			}
			pn.SetDeviceIdAndPlatform(d)
			go s.postPush(server, pn)
		}
	}
}

func (s *Server) postPush(server string, pn *model.PushNotification) {
	b, _ := json.Marshal(pn)
	resp, err := pushClient.Post(server+"/api/v1/send_push", "application/json", bytes.NewReader(b))
	if err != nil {
		s.Log.Log("error", "Failed to send the push notification", "server", server, "error", err.Error())
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.Log.Log("error", "The push proxy refused the notification", "server", server, "status", resp.StatusCode)
		return
	}
	s.PushesSent.Add(1)
}
