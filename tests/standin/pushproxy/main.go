// TEST STAND-IN for mattermost-push-proxy (Mattermost's Apache-2.0 push notification proxy),
// written by the mmdeploy project because neither its source nor its release archive can be
// downloaded on the test machines (RECIPES.md). It is not Mattermost software.
//
// It keeps the boundaries a deploy tool and a Mattermost server touch:
//   - `bin/mattermost-push-proxy [-config FILE] [-version]`, the config file looked up like
//     the real one (/tmp/, ./config/, ../config/, then as given) in its JSON format;
//   - GET / and /version, POST /api/v1/send_push and /api/v1/ack with the real answers
//     ({"status":"OK"}, {"status":"FAIL","error":...}), the per-second throttle, and
//     Prometheus /metrics with the real metric names when EnableMetrics is set;
//   - push targets are set up from ApplePushSettings/AndroidPushSettings with the real
//     requirements on their credential files; a target whose credentials do not load is
//     skipped, and pushes for it fail, as in the real proxy.
//
// What differs: nothing is sent to APNs or FCM. Each accepted notification is recorded
// instead, as a JSON line in logs/standin-received.jsonl (next to bin/, or the file named by
// $MMDEPLOY_STANDIN_PUSH_RECORD) and in memory, served by GET /api/v1/received, an endpoint
// that exists only in this stand-in, so tests can assert delivery.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	configFile := flag.String("config", "mattermost-push-proxy.json", "")
	showVersion := flag.Bool("version", false, "")
	flag.Parse()

	if *showVersion {
		fmt.Print(versionInfo().String())
		return
	}

	fileName := findConfigFile(*configFile)
	cfg, err := loadConfig(fileName)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	logger, err := newLogger(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	logger.Info("Loading " + fileName)

	recorder, err := newRecorder(recordPath())
	if err != nil {
		logger.Error("stand-in: cannot open the record file", "err", err)
		os.Exit(1)
	}

	srv := newServer(cfg, logger, recorder)
	if err := srv.Start(); err != nil {
		logger.Error(err.Error())
		os.Exit(1)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	srv.Stop()
}
