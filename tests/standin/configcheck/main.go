// configcheck validates a Mattermost config.json with Mattermost's own model
// package (github.com/mattermost/mattermost/server/public/model, Apache-2.0):
// it unmarshals the file into model.Config, calls SetDefaults() and then
// IsValid(), prints "ok" or the app error, and exits 1 on an invalid config.
// This is the same check the real server runs on its config at start-up.
//
// Usage: configcheck PATH/TO/config.json
//
//	configcheck --print-defaults   (the model's default config, as the real
//	                                release's config/config.json is generated)
//	configcheck --model-version    (the model module version it was built with)
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/mattermost/mattermost/server/public/model"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: configcheck CONFIG.json")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "--print-defaults":
		var cfg model.Config
		cfg.SetDefaults()
		out, err := json.MarshalIndent(&cfg, "", "    ")
		if err != nil {
			fmt.Fprintln(os.Stderr, "configcheck:", err)
			os.Exit(1)
		}
		fmt.Println(string(out))
		return
	case "--model-version":
		fmt.Println(modelVersion())
		return
	}
	os.Exit(run(os.Args[1]))
}

func modelVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/mattermost/mattermost/server/public" {
				return d.Path + " " + d.Version
			}
		}
	}
	return "unknown"
}

func run(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "configcheck:", err)
		return 1
	}
	var cfg model.Config
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&cfg); err != nil {
		fmt.Printf("%s: invalid JSON for model.Config: %v\n", path, err)
		return 1
	}
	cfg.SetDefaults()
	if appErr := cfg.IsValid(); appErr != nil {
		fmt.Printf("%s: %s (id=%s, detail=%s)\n", path, appErr.Error(), appErr.Id, appErr.DetailedError)
		return 1
	}
	fmt.Println("ok")
	return 0
}
