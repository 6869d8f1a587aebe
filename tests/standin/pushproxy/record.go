// TEST STAND-IN (see main.go): the record of accepted notifications, the stand-in's
// replacement for delivery to APNs/FCM. Tests read it to assert that a push got through.
package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
)

type received struct {
	ReceivedAt   string                  `json:"received_at"`
	Type         string                  `json:"target"`      // the settings entry that took it
	AppVersion   int                     `json:"app_version"` // from the platform's -vN suffix
	RemoteAddr   string                  `json:"remote_addr"`
	Notification *model.PushNotification `json:"notification"`
}

type recorder struct {
	mu    sync.Mutex
	file  *os.File
	items []received
}

const keepInMemory = 10000

// recordPath: $MMDEPLOY_STANDIN_PUSH_RECORD, else logs/standin-received.jsonl in the
// release directory (the parent of bin/), whatever the working directory is.
func recordPath() string {
	if p := os.Getenv("MMDEPLOY_STANDIN_PUSH_RECORD"); p != "" {
		return p
	}
	exe, err := os.Executable()
	if err != nil {
		return "standin-received.jsonl"
	}
	return filepath.Join(filepath.Dir(filepath.Dir(exe)), "logs", "standin-received.jsonl")
}

func newRecorder(path string) (*recorder, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, err
	}
	return &recorder{file: f}, nil
}

func (r *recorder) add(item received) error {
	item.ReceivedAt = time.Now().UTC().Format(time.RFC3339Nano)
	line, err := json.Marshal(item)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.items) == keepInMemory {
		r.items = r.items[1:]
	}
	r.items = append(r.items, item)
	_, err = r.file.Write(append(line, '\n'))
	return err
}

func (r *recorder) list() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received{}, r.items...)
}
