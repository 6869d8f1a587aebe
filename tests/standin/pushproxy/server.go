// TEST STAND-IN (see main.go): the HTTP API of mattermost-push-proxy.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type server struct {
	cfg      *Config
	log      *slog.Logger
	record   *recorder
	targets  map[string]*target
	metrics  *metrics // nil unless EnableMetrics
	http     *http.Server
	listener net.Listener
}

func newServer(cfg *Config, logger *slog.Logger, rec *recorder) *server {
	return &server{cfg: cfg, log: logger, record: rec, targets: map[string]*target{}}
}

// Start sets up the targets, then listens; like the real proxy it keeps going when a
// target's credentials do not load (that target's pushes fail), and exits when it cannot listen.
func (s *server) Start() error {
	s.log.Info("Push proxy server is initializing... (mmdeploy test stand-in)", "version", versionInfo().BuildVersion)
	if s.cfg.EnableMetrics {
		s.metrics = newMetrics()
	}
	for _, settings := range s.cfg.ApplePushSettings {
		s.log.Info("Initializing apple notification server", "type", settings.Type)
		s.addTarget(appleTarget(settings))
	}
	for _, settings := range s.cfg.AndroidPushSettings {
		s.log.Info("Initializing Android notification server", "type", settings.Type)
		if settings.AndroidAPIKey != "" {
			s.log.Info("AndroidPushSettings.AndroidAPIKey is no longer used. Please remove this config value.")
		}
		s.addTarget(androidTarget(settings))
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<html><body>Mattermost Push Proxy</body></html>"))
	})
	mux.HandleFunc("GET /version", s.handleVersion)
	send, ack := s.handleSend, s.handleAck
	if s.metrics != nil {
		mux.Handle("GET /metrics", promhttp.Handler())
		send, ack = s.timed(send), s.timed(ack)
	}
	mux.HandleFunc("POST /api/v1/send_push", send)
	mux.HandleFunc("POST /api/v1/ack", ack)
	mux.HandleFunc("GET /api/v1/received", s.handleReceived)

	ln, err := net.Listen("tcp", s.cfg.ListenAddress)
	if err != nil {
		return err
	}
	s.listener = ln
	s.http = &http.Server{Handler: s.throttle(mux), ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second}
	go func() {
		if err := s.http.Serve(ln); err != http.ErrServerClosed {
			s.log.Error(err.Error())
		}
	}()
	s.log.Info("Server is listening on " + s.cfg.ListenAddress)
	return nil
}

func (s *server) addTarget(t *target, err error) {
	if err != nil {
		s.log.Error("Failed to initialize client", "err", err)
		return
	}
	s.targets[t.Type] = t
}

func (s *server) Stop() {
	s.log.Info("Stopping Server...")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.metrics != nil {
		s.metrics.shutdown()
	}
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Error(err.Error())
	}
}

func (s *server) timed(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		f(w, r)
		s.metrics.serviceResponse.Observe(time.Since(start).Seconds())
	}
}

func (s *server) handleVersion(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(versionInfo())
}

// reply answers like the real proxy: HTTP 200 with {"status": "OK"|"FAIL", "error": ...}.
func (s *server) reply(w http.ResponseWriter, errMsg string) {
	resp := map[string]string{"status": "OK"}
	if errMsg != "" {
		s.log.Error(errMsg)
		resp = map[string]string{"status": "FAIL", "error": errMsg}
		if s.metrics != nil {
			s.metrics.badRequest.Inc()
		}
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *server) handleSend(w http.ResponseWriter, r *http.Request) {
	var msg model.PushNotification
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
		s.reply(w, fmt.Sprintf("Failed to read message body: %v", err))
		return
	}
	if msg.ServerId == "" {
		s.reply(w, "Failed because of missing server Id")
		return
	}
	if msg.DeviceId == "" {
		s.reply(w, fmt.Sprintf("Failed because of missing device Id serverId=%v", msg.ServerId))
		return
	}
	if len(msg.Message) > 2047 {
		msg.Message = msg.Message[:2046]
	}
	if len(msg.ChannelName) > 64 {
		msg.ChannelName = msg.ChannelName[:64]
	}
	// "apple_rn-v2": platform apple_rn, app version 2.
	appVersion := 1
	if i := strings.Index(msg.Platform, "-v"); i > -1 {
		versionText := msg.Platform[i+2:]
		msg.Platform = msg.Platform[:i]
		if v, err := strconv.Atoi(versionText); err == nil {
			appVersion = v
		} else {
			s.log.Error(fmt.Sprintf("Could not determine the app version in %v appVersion=%v", msg.Platform, versionText))
		}
	}
	t, ok := s.targets[msg.Platform]
	if !ok {
		s.reply(w, fmt.Sprintf("Did not send message because of missing platform property type=%v serverId=%v", msg.Platform, msg.ServerId))
		return
	}

	start := time.Now()
	transport := string(msg.Transport)
	if t.Platform == "android" {
		transport = "" // FCM has only the standard path
	}
	if s.metrics != nil {
		s.metrics.notificationByAppVersion(msg.Platform, appVersion)
		s.metrics.notification(t.Platform, msg.Type, transport)
	}
	s.log.Info("Sending "+t.Platform+" push notification (stand-in: recorded, not sent)",
		"device", t.Type, "type", msg.Type, "ack_id", msg.AckId)
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	err := s.record.add(received{Type: t.Type, AppVersion: appVersion, RemoteAddr: host, Notification: &msg})
	if s.metrics != nil {
		s.metrics.observeNotification(t.Platform, time.Since(start).Seconds())
	}
	if err != nil {
		if s.metrics != nil {
			s.metrics.failure.WithLabelValues(t.Platform, msg.Type, transport).Inc()
		}
		s.log.Error("stand-in: cannot record the notification", "err", err)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "FAIL", "error": err.Error()})
		return
	}
	if s.metrics != nil {
		s.metrics.succeeded(t.Platform, msg.Type, transport, msg.AckId != "")
	}
	s.reply(w, "")
}

func (s *server) handleAck(w http.ResponseWriter, r *http.Request) {
	var ack model.PushNotificationAck
	if err := json.NewDecoder(r.Body).Decode(&ack); err != nil {
		s.reply(w, fmt.Sprintf("Failed to read ack body: %v", err))
		return
	}
	switch {
	case ack.Id == "":
		s.reply(w, "Failed because of missing ack Id")
	case ack.ClientPlatform == "":
		s.reply(w, "Failed because of missing ack platform")
	case ack.NotificationType == "":
		s.reply(w, "Failed because of missing ack type")
	default:
		s.log.Info("Acknowledged delivery receipt", "ack_id", ack.Id)
		s.reply(w, "")
	}
}

// handleReceived exists only in the stand-in: what it would have delivered, oldest first.
func (s *server) handleReceived(w http.ResponseWriter, _ *http.Request) {
	items := s.record.list()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Mmdeploy-Standin", "pushproxy")
	_ = json.NewEncoder(w).Encode(map[string]any{"standin": true, "count": len(items), "received": items})
}

// throttle allows ThrottlePerSec requests per second per value of the ThrottleVaryByHeader
// headers (all requests share one budget when those headers are absent), keeping at most
// ThrottleMemoryStoreSize keys, and answers 429 beyond that, like the real proxy.
func (s *server) throttle(next http.Handler) http.Handler {
	limit, size := s.cfg.ThrottlePerSec, s.cfg.ThrottleMemoryStoreSize
	if limit <= 0 {
		return next
	}
	if size <= 0 {
		size = 50000
	}
	headers := strings.Fields(s.cfg.ThrottleVaryByHeader)
	type window struct {
		second int64
		count  int
	}
	var mu sync.Mutex
	windows := map[string]*window{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var key strings.Builder
		for _, h := range headers {
			key.WriteString(strings.ToLower(r.Header.Get(h)))
			key.WriteByte('\n')
		}
		now := time.Now().Unix()
		mu.Lock()
		win := windows[key.String()]
		if win == nil {
			if len(windows) >= size {
				windows = map[string]*window{}
			}
			win = &window{}
			windows[key.String()] = win
		}
		if win.second != now {
			win.second, win.count = now, 0
		}
		win.count++
		remaining := limit - win.count
		mu.Unlock()
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(limit))
		if remaining < 0 {
			w.Header().Set("X-RateLimit-Remaining", "0")
			s.log.Error("Error: code=429", "path", r.URL.Path)
			http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
			return
		}
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
		next.ServeHTTP(w, r)
	})
}
