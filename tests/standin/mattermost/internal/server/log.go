// TEST STAND-IN for the real Mattermost server's logging and systemd
// notification (used because the Mattermost release cannot be downloaded on
// the test machines and the server is AGPL). Reproduced boundaries: JSON log
// lines on the console and in logs/mattermost.log, and sd_notify READY=1 /
// STOPPING=1 over $NOTIFY_SOCKET (a unix datagram socket) for Type=notify units.
package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"mmdeploy.test/standin/mattermost/internal/config"
)

// Logger writes Mattermost-style JSON log lines.
type Logger struct {
	mu  sync.Mutex
	out []io.Writer
}

// NewLogger logs to stdout (LogSettings.EnableConsole) and to the log file
// (LogSettings.EnableFile; FileLocation, default logs/ under the install dir).
func NewLogger(cfg *config.Config) *Logger {
	l := &Logger{}
	if cfg == nil || *cfg.LogSettings.EnableConsole {
		l.out = append(l.out, os.Stdout)
	}
	if cfg != nil && *cfg.LogSettings.EnableFile {
		dir := *cfg.LogSettings.FileLocation
		if dir == "" {
			dir = filepath.Join(filepath.Dir(filepath.Dir(config.DefaultPath())), "logs")
		}
		path := dir
		if !strings.HasSuffix(dir, ".log") {
			path = filepath.Join(dir, "mattermost.log")
		}
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err == nil {
			l.out = append(l.out, f)
		} else {
			fmt.Fprintf(os.Stderr, `{"timestamp":%q,"level":"warn","msg":"Cannot open the log file; logging to the console only","path":%q,"error":%q}`+"\n",
				time.Now().Format("2006-01-02 15:04:05.000 Z07:00"), path, err.Error())
		}
	}
	if len(l.out) == 0 {
		l.out = append(l.out, io.Discard)
	}
	return l
}

// Log writes one line: level, message, then key/value pairs.
func (l *Logger) Log(level, msg string, kv ...any) {
	m := map[string]any{"timestamp": time.Now().Format("2006-01-02 15:04:05.000 Z07:00"), "level": level, "msg": msg}
	for i := 0; i+1 < len(kv); i += 2 {
		m[fmt.Sprint(kv[i])] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.out {
		w.Write(append(b, '\n'))
	}
}

// Notify sends a state string to systemd's $NOTIFY_SOCKET; no-op without one.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:] // abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
