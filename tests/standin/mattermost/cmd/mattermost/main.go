// TEST STAND-IN for the real Mattermost server binary `bin/mattermost`, used
// because the Mattermost release tarball cannot be downloaded on the test
// machines and the server is AGPL (it is not built here). It reproduces the
// boundaries a deploy tool touches: `--config PATH` / MM_CONFIG (file or
// postgres:// / mysql:// database store), MM_* overrides, refusal to start on
// missing or invalid SqlSettings, the DB connection with retries, systemd
// READY=1, the API v4 subset a verifier and client libraries use, the
// websocket, /metrics, the local-mode socket for mmctl --local, `jobserver`,
// `version` and `db migrate` (apply the schema migrations, then exit); the Enterprise features gated by a (TEST-key) license: cluster
// over gossip, Elasticsearch/OpenSearch, read replicas; S3 files, push
// notifications, schema versions (see tests/standin/README.md).
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"mmdeploy.test/standin/mattermost/internal/config"
	"mmdeploy.test/standin/mattermost/internal/server"
)

func usage() {
	fmt.Fprint(os.Stderr, `Mattermost (test stand-in)

Usage:
  mattermost [flags]
  mattermost [command]

Available Commands:
  db migrate  Apply the database schema migrations, then exit
  jobserver   Start the Mattermost job server
  server      Run the Mattermost server (the default)
  version     Display version information

Flags:
  -c, --config string   Configuration file to use.
`)
}

func main() {
	var cfgFlag, cmd, sub string
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-c" || a == "--config":
			if i+1 >= len(args) {
				fmt.Fprintln(os.Stderr, "Error: flag needs an argument: --config")
				os.Exit(1)
			}
			cfgFlag = args[i+1]
			i++
		case strings.HasPrefix(a, "--config="):
			cfgFlag = strings.TrimPrefix(a, "--config=")
		case a == "-h" || a == "--help" || a == "help":
			usage()
			return
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(os.Stderr, "Error: unknown flag: %s\n", a)
			os.Exit(1)
		case cmd == "":
			cmd = a
		case cmd == "db" && sub == "":
			sub = a
		default:
			fmt.Fprintf(os.Stderr, "Error: unexpected argument %q\n", a)
			os.Exit(1)
		}
	}
	switch cmd {
	case "version":
		fmt.Printf("Version: %s\nBuild Number: %s\nBuild Date: %s\nBuild Hash: %s\nBuild Enterprise Ready: true\n",
			server.Version, server.BuildNumber, server.BuildDate, server.BuildHash)
		return
	case "", "server", "jobserver":
	case "db":
		if sub != "migrate" {
			fmt.Fprintf(os.Stderr, "Error: unknown command %q for \"mattermost db\" (the stand-in knows migrate)\n", sub)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "Error: unknown command %q for \"mattermost\"\n", cmd)
		os.Exit(1)
	}
	src := config.Resolve(cfgFlag, os.Getenv)
	cfg, _, err := config.Load(src, os.Environ())
	boot := server.NewLogger(nil)
	if err != nil {
		boot.Log("error", "Failed to load configuration", "error", err.Error())
		fmt.Fprintln(os.Stderr, "Error: failed to load configuration:", err)
		os.Exit(1)
	}
	if err := cfg.IsValid(); err != nil {
		boot.Log("error", "Invalid configuration, refusing to start", "source", src.Path, "error", err.Error())
		fmt.Fprintln(os.Stderr, "Error: invalid configuration:", err)
		os.Exit(1)
	}
	// Mattermost v11 removed MySQL: its model rejects DriverName "mysql".
	if *cfg.SqlSettings.DriverName == "mysql" && majorVersion(server.Version) >= 11 {
		boot.Log("error", "Invalid configuration, refusing to start", "source", src.Path,
			"error", "SqlSettings.DriverName mysql is not supported by Mattermost "+server.Version+" (model.config.is_valid.sql_driver.app_error)")
		fmt.Fprintln(os.Stderr, "Error: invalid configuration: MySQL is not supported by Mattermost", server.Version)
		os.Exit(1)
	}
	if src.Kind != "database" {
		if err := config.GenerateKeys(src.Path); err != nil {
			boot.Log("error", "Failed to save the generated keys", "error", err.Error())
			fmt.Fprintln(os.Stderr, "Error: failed to save configuration:", err)
			os.Exit(1)
		}
	}
	log := server.NewLogger(cfg)
	if cmd == "db" {
		if err := server.Migrate(cfg, log); err != nil {
			fmt.Fprintln(os.Stderr, "Error: failed to migrate the database:", err)
			os.Exit(1)
		}
		fmt.Println("Database successfully migrated")
		return
	}
	if err := server.Run(cfg, src, log, server.Options{JobServerOnly: cmd == "jobserver"}); err != nil {
		log.Log("error", "Server failed to start", "error", err.Error())
		fmt.Fprintln(os.Stderr, "Error: run server:", err)
		os.Exit(1)
	}
}

func majorVersion(v string) int {
	n, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	return n
}
