// TEST STAND-IN (see main.go): the version report of mattermost-push-proxy.
package main

import (
	"fmt"
	"runtime"
	"strings"
	"text/tabwriter"
)

// Stamped by tests/standin/build-pushproxy.sh with -X, as the real Makefile stamps its build.
var (
	gitVersion      = "devel"
	buildHash       = "unknown"
	buildTagLatest  = "unknown"
	buildTagCurrent = "unknown"
	buildDate       = "unknown"
)

// Info is what GET /version answers: {"hash": ..., "version": ...}.
type Info struct {
	GitVersion   string `json:"-"`
	BuildHash    string `json:"hash"`
	BuildVersion string `json:"version"`
	BuildDate    string `json:"-"`
}

func versionInfo() Info {
	version := ""
	for _, t := range strings.Fields(buildTagCurrent) {
		if strings.HasPrefix(t, "v") {
			version = t
			break
		}
	}
	if version == "" {
		version = buildTagLatest + "+" + buildHash
	}
	return Info{GitVersion: gitVersion, BuildHash: buildHash, BuildVersion: strings.TrimPrefix(version, "v"), BuildDate: buildDate}
}

func (i Info) String() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "GitVersion:\t%s\n", i.GitVersion)
	fmt.Fprintf(w, "BuildHash:\t%s\n", i.BuildHash)
	fmt.Fprintf(w, "BuildVersion:\t%s\n", i.BuildVersion)
	fmt.Fprintf(w, "GitTreeState:\tclean\n")
	fmt.Fprintf(w, "BuildDate:\t%s\n", i.BuildDate)
	fmt.Fprintf(w, "GoVersion:\t%s\n", runtime.Version())
	fmt.Fprintf(w, "Compiler:\t%s\n", runtime.Compiler)
	fmt.Fprintf(w, "Platform:\t%s/%s\n", runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "StandIn:\tmmdeploy test stand-in, not Mattermost software\n")
	w.Flush()
	return b.String()
}
