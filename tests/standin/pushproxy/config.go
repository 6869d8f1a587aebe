// TEST STAND-IN (see main.go): the config file format of mattermost-push-proxy.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

type Config struct {
	ListenAddress           string
	ThrottlePerSec          int
	ThrottleMemoryStoreSize int
	ThrottleVaryByHeader    string
	EnableMetrics           bool
	SendTimeoutSec          int
	RetryTimeoutSec         int
	ApplePushSettings       []ApplePushSettings
	AndroidPushSettings     []AndroidPushSettings
	EnableConsoleLog        bool
	EnableFileLog           bool
	LogFileLocation         string
	LogFormat               string // plain or json
}

type ApplePushSettings struct {
	Type                    string
	ApplePushUseDevelopment bool
	ApplePushCertPrivate    string
	ApplePushCertPassword   string
	ApplePushTopic          string
	AppleAuthKeyFile        string
	AppleAuthKeyID          string
	AppleTeamID             string
}

type AndroidPushSettings struct {
	Type                string
	AndroidAPIKey       string `json:"AndroidApiKey"`
	ServiceFileLocation string
}

// findConfigFile looks where the real proxy looks, in the same order.
func findConfigFile(name string) string {
	for _, candidate := range []string{"/tmp/" + name, "./config/" + name, "../config/" + name, name} {
		if _, err := os.Stat(candidate); err == nil {
			abs, _ := filepath.Abs(candidate)
			return abs
		}
	}
	return name
}

// loadConfig reads the file and applies the real proxy's defaults.
func loadConfig(fileName string) (*Config, error) {
	f, err := os.Open(fileName)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	var cfg Config
	if err := json.Unmarshal(buf, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", fileName, err)
	}
	if !cfg.EnableConsoleLog && !cfg.EnableFileLog {
		cfg.EnableConsoleLog = true
	}
	if cfg.SendTimeoutSec == 0 {
		cfg.SendTimeoutSec = 30
	}
	if cfg.RetryTimeoutSec == 0 {
		cfg.RetryTimeoutSec = 8
	}
	if cfg.RetryTimeoutSec > cfg.SendTimeoutSec {
		cfg.RetryTimeoutSec = cfg.SendTimeoutSec
	}
	if cfg.EnableFileLog && cfg.LogFileLocation == "" {
		cfg.LogFileLocation = "./push_proxy.log"
		if os.MkdirAll("./logs", 0o755) == nil {
			cfg.LogFileLocation = "./logs/push_proxy.log"
		}
	}
	return &cfg, nil
}

// newLogger logs to stdout and/or the log file, plain text or JSON, as configured.
func newLogger(cfg *Config) (*slog.Logger, error) {
	var outs []io.Writer
	if cfg.EnableConsoleLog || !cfg.EnableFileLog {
		outs = append(outs, os.Stdout)
	}
	if cfg.EnableFileLog {
		f, err := os.OpenFile(cfg.LogFileLocation, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		outs = append(outs, f)
	}
	w := io.MultiWriter(outs...)
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return slog.New(slog.NewTextHandler(w, nil)), nil
}
