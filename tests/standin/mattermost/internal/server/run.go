// TEST STAND-IN for the real Mattermost server's process life cycle (used
// because the Mattermost release cannot be downloaded on the test machines and
// the server is AGPL). Reproduced boundaries: start-up order (config, database
// with retries, listeners, then READY=1 to systemd), the API listener on
// ServiceSettings.ListenAddress, Prometheus text /metrics on
// MetricsSettings.ListenAddress when MetricsSettings.Enable, the local-mode
// unix socket (0600) when ServiceSettings.EnableLocalMode, the job loop
// (JobSettings.RunJobs; `mattermost jobserver` runs only that), and a clean
// shutdown on SIGTERM/SIGINT. Divergence: the real server serves /metrics only
// with an Enterprise license; the stand-in serves it whenever enabled.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mmdeploy.test/standin/mattermost/internal/config"
	"mmdeploy.test/standin/mattermost/internal/filestore"
	"mmdeploy.test/standin/mattermost/internal/mmid"
	"mmdeploy.test/standin/mattermost/internal/store"
)

type ctxLocal struct{}

func contextWithLocal(r *http.Request) context.Context {
	return context.WithValue(r.Context(), ctxLocal{}, true)
}

func isLocal(r *http.Request) bool {
	v, _ := r.Context().Value(ctxLocal{}).(bool)
	return v
}

// Options selects what Run starts.
type Options struct {
	JobServerOnly bool
}

// Run loads nothing itself: it starts the server for an already loaded and
// validated config and blocks until SIGTERM/SIGINT. It returns an error
// (non-zero exit) when start-up fails.
func Run(cfg *config.Config, src config.Source, log *Logger, opt Options) error {
	s := &Server{Cfg: cfg, Src: src, Log: log, Hub: NewHub(), StartTime: time.Now(), NodeID: mmid.New()}
	mode := "server"
	if opt.JobServerOnly {
		mode = "jobserver"
	}
	log.Log("info", "Server is initializing...", "go_version", runtime.Version(), "mode", mode)
	log.Log("info", "Loaded config", "source", src.Kind, "path", src.Path)
	if Broken == "true" {
		return runBroken(cfg, log)
	}
	st, err := store.Open(cfg, log.Log, Version)
	if errors.Is(err, store.ErrSchemaTooNew) {
		log.Log("fatal", "Refusing to start: the database schema is newer than this server", "current_version", Version, "error", err.Error())
		return err
	}
	if err != nil {
		return err
	}
	defer st.Close()
	s.Store = st
	log.Log("info", "Current version is "+Version, "current_version", Version, "build_number", BuildNumber, "build_hash", BuildHash)
	s.schemaVersion = st.SchemaVersion()
	s.configHash = ConfigHash(cfg)
	s.loadLicense()
	st.Licensed = func() bool { return s.License() != nil }
	if n := len(cfg.SqlSettings.DataSourceReplicas); n > 0 && s.License() == nil {
		log.Log("warn", "SqlSettings.DataSourceReplicas are set but there is no license: all reads go to the primary", "replicas", n)
	}
	if fs, err := filestore.New(cfg); err != nil {
		log.Log("error", "Problem with file storage settings", "error", err.Error())
	} else {
		s.Files = fs
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := fs.Test(ctx); err != nil {
			log.Log("error", "Problem with file storage settings", "driver", fs.Name(), "error", err.Error())
		} else {
			log.Log("info", "File store is ready", "driver", fs.Name())
		}
		cancel()
	}
	s.startSearch()
	if err := s.startCluster(); err != nil {
		return err
	}
	if s.Cluster != nil {
		defer s.Cluster.Stop()
	}

	var servers []*http.Server
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	serve := func(srv *http.Server, l net.Listener) {
		servers = append(servers, srv)
		listeners = append(listeners, l)
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Log("error", "Listener stopped", "addr", l.Addr().String(), "error", err.Error())
			}
		}()
	}

	if !opt.JobServerOnly {
		addr := *cfg.ServiceSettings.ListenAddress
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("failed to listen on %s: %w", addr, err)
		}
		serve(&http.Server{Handler: s.Handler(false), ReadHeaderTimeout: 30 * time.Second}, l)
		log.Log("info", "Server is listening on "+l.Addr().String(), "address", l.Addr().String())

		if *cfg.ServiceSettings.EnableLocalMode {
			sock := *cfg.ServiceSettings.LocalModeSocketLocation
			if fi, err := os.Lstat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
				os.Remove(sock) // stale socket from a previous run
			}
			ul, err := net.Listen("unix", sock)
			if err != nil {
				closeAll()
				return fmt.Errorf("failed to start the local mode socket %s: %w", sock, err)
			}
			os.Chmod(sock, 0o600)
			serve(&http.Server{Handler: s.Handler(true), ReadHeaderTimeout: 30 * time.Second}, ul)
			log.Log("info", "Started local mode socket", "path", sock)
			defer os.Remove(sock)
		}
	}
	if *cfg.MetricsSettings.Enable {
		addr := *cfg.MetricsSettings.ListenAddress
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("failed to start the metrics server on %s: %w", addr, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/metrics", s.metrics)
		serve(&http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}, l)
		log.Log("info", "Metrics and profiling server is started", "address", l.Addr().String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if opt.JobServerOnly || *cfg.JobSettings.RunJobs {
		go s.jobLoop(ctx)
		log.Log("info", "Starting workers")
	}
	if err := Notify("READY=1"); err != nil {
		log.Log("warn", "Failed to notify systemd", "error", err.Error())
	} else if os.Getenv("NOTIFY_SOCKET") != "" {
		log.Log("info", "Sent systemd notification READY=1")
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	got := <-sig
	log.Log("info", "Stopping Server...", "signal", got.String())
	Notify("STOPPING=1")
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	for _, srv := range servers {
		srv.Shutdown(sctx)
	}
	log.Log("info", "Server stopped")
	return nil
}

// Migrate is `mattermost db migrate`: the schema migrations of this release
// applied under the migration lock (as the server does on start), then exit.
func Migrate(cfg *config.Config, log *Logger) error {
	if Broken == "true" {
		return errors.New("deliberately broken stand-in release (build.sh --broken)")
	}
	st, err := store.Open(cfg, log.Log, Version)
	if err != nil {
		return err
	}
	st.Close()
	log.Log("info", "Migrations applied", "version", Version)
	return nil
}

// Broken is "true" in a release built with build.sh --broken.
var Broken = "false"

// runBroken is the deliberately broken release (build.sh --broken) for
// upgrade-rollback tests: it touches no database, answers every request with
// 500, tells systemd it is ready and exits 1 after MMSTANDIN_BROKEN_EXIT_SECONDS
// (default 20), like a release that crashes shortly after start.
func runBroken(cfg *config.Config, log *Logger) error {
	log.Log("error", "This stand-in release was built with --broken: it fails its health check and exits", "version", Version)
	l, err := net.Listen("tcp", *cfg.ServiceSettings.ListenAddress)
	if err != nil {
		return err
	}
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version-Id", VersionID())
		writeJSON(w, http.StatusInternalServerError, map[string]any{"status": "UNHEALTHY", "database_status": "UNHEALTHY",
			"id": "app.standin.broken_release", "message": "deliberately broken stand-in release"})
	}))
	Notify("READY=1")
	wait := 20.0
	if v, err := strconv.ParseFloat(os.Getenv("MMSTANDIN_BROKEN_EXIT_SECONDS"), 64); err == nil && v >= 0 {
		wait = v
	}
	time.Sleep(time.Duration(wait * float64(time.Second)))
	return errors.New("deliberately broken stand-in release (build.sh --broken)")
}

func discoveryInterval() time.Duration {
	if v, err := strconv.ParseFloat(os.Getenv("MMSTANDIN_CLUSTER_DISCOVERY_SECONDS"), 64); err == nil && v > 0 {
		return time.Duration(v * float64(time.Second))
	}
	return 10 * time.Second
}

func jobInterval() time.Duration {
	if v := os.Getenv("MMSTANDIN_JOB_INTERVAL_SECONDS"); v != "" {
		if d, err := time.ParseDuration(v + "s"); err == nil && d > 0 {
			return d
		}
	}
	return time.Minute
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	m := func(name, typ, help string, v any) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
	}
	host, _ := os.Hostname()
	m("mattermost_http_requests_total", "counter", "The total number of http API requests.", s.Requests.Load())
	m("mattermost_http_errors_total", "counter", "The total number of http API errors.", s.Errors.Load())
	m("mattermost_db_master_connections_total", "gauge", "The total number of connections to the master database.", s.Store.PrimaryOpenConnections())
	m("mattermost_db_read_replica_connections_total", "gauge", "The total number of connections to all the read replica databases.", s.Store.ReplicaOpenConnections())
	m("mattermost_login_logins_total", "counter", "The total number of successful logins.", s.Logins.Load())
	m("mattermost_login_logins_fail_total", "counter", "The total number of failed logins.", s.LoginFails.Load())
	m("mattermost_post_total", "counter", "The total number of posts created.", s.PostsCreated.Load())
	m("mattermost_websocket_broadcasts_total", "counter", "The total number of websocket broadcasts sent.", s.Hub.Broadcasts.Load())
	m("mattermost_http_websockets_total", "gauge", "The total number of websocket connections to this server.", s.Hub.Count())
	m("mattermost_jobs_active", "gauge", "Number of active jobs.", 0)
	m("mattermost_standin_job_runs_total", "counter", "Stand-in only: heartbeat job runs.", s.JobRuns.Load())
	fmt.Fprintf(&b, "# HELP mattermost_system_server_start_time The time the server started.\n# TYPE mattermost_system_server_start_time gauge\nmattermost_system_server_start_time{hostname=%q} %d\n", host, s.StartTime.UnixMilli())
	m("go_goroutines", "gauge", "Number of goroutines that currently exist.", runtime.NumGoroutine())
	m("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", s.StartTime.Unix())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write([]byte(b.String()))
}
