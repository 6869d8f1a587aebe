// Tests for the TEST STAND-IN config loader: file loading, MM_* overrides,
// defaults, the start-up checks and DSN parsing.
package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAppliesEnvOverridesLikeTheRealServer(t *testing.T) {
	raw := []byte(`{"ServiceSettings":{"SiteURL":"https://a.example","ListenAddress":":8065"},
		"SqlSettings":{"DriverName":"postgres","DataSource":"postgres://u:p@db:5432/mm?sslmode=disable","DataSourceReplicas":["postgres://u:p@r0:5432/mm"]},
		"MetricsSettings":{"Enable":false}}`)
	env := []string{
		"MM_SQLSETTINGS_DATASOURCE=postgres://u:p@db2:5432/mm?sslmode=disable&connect_timeout=10",
		"MM_SERVICESETTINGS_SITEURL=https://chat.example.com",
		"MM_SQLSETTINGS_DATASOURCEREPLICAS=postgres://u:p@r1:5432/mm postgres://u:p@r2:5432/mm",
		"MM_METRICSSETTINGS_ENABLE=true",
		"MM_SQLSETTINGS_MAXOPENCONNS=7",
		"mm_servicesettings_listenaddress=:9000", // case-insensitive, as the real server
		"MM_NOSUCHSECTION_KEY=x",                 // unknown names are ignored
		"MM_SQLSETTINGS=x",                       // a section name alone is ignored
		"MM_CONFIG=/elsewhere.json",              // not an override
		"PATH=/usr/bin",
	}
	c, err := Parse(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := *c.SqlSettings.DataSource; got != "postgres://u:p@db2:5432/mm?sslmode=disable&connect_timeout=10" {
		t.Errorf("DataSource = %q", got)
	}
	if got := *c.ServiceSettings.SiteURL; got != "https://chat.example.com" {
		t.Errorf("SiteURL = %q", got)
	}
	if got := strings.Join(c.SqlSettings.DataSourceReplicas, ","); got != "postgres://u:p@r1:5432/mm,postgres://u:p@r2:5432/mm" {
		t.Errorf("replicas = %q", got)
	}
	if !*c.MetricsSettings.Enable || *c.SqlSettings.MaxOpenConns != 7 || *c.ServiceSettings.ListenAddress != ":9000" {
		t.Errorf("bool/int/lowercase overrides not applied: %v %v %v", *c.MetricsSettings.Enable, *c.SqlSettings.MaxOpenConns, *c.ServiceSettings.ListenAddress)
	}
	if err := c.IsValid(); err != nil {
		t.Errorf("IsValid: %v", err)
	}
}

func TestBadOverrideValueIsAnError(t *testing.T) {
	if _, err := Parse([]byte(`{}`), []string{"MM_METRICSSETTINGS_ENABLE=maybe"}); err == nil {
		t.Fatal("want an error for a non-boolean value")
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if *c.ServiceSettings.ListenAddress != ":8065" || *c.MetricsSettings.ListenAddress != ":8067" ||
		*c.ServiceSettings.LocalModeSocketLocation != "/var/tmp/mattermost_local.socket" ||
		*c.SqlSettings.DriverName != "postgres" || *c.SqlSettings.DataSource != DefaultDataSource ||
		*c.MetricsSettings.Enable || *c.ServiceSettings.EnableLocalMode || !*c.JobSettings.RunJobs {
		t.Errorf("unexpected defaults: %+v", c)
	}
	if err := c.IsValid(); err != nil {
		t.Errorf("defaults must be valid: %v", err)
	}
}

func TestIsValidRefusesBadSqlSettings(t *testing.T) {
	cases := map[string]string{
		`{"SqlSettings":{"DriverName":"oracle","DataSource":"x"}}`:                           "DriverName",
		`{"SqlSettings":{"DriverName":"postgres","DataSource":""}}`:                          "DataSource is empty",
		`{"SqlSettings":{"DriverName":"postgres","DataSource":"mysql://u:p@tcp(h:3306)/d"}}`: "postgres://",
		`{"SqlSettings":{"DriverName":"postgres","DataSource":"postgres://u:p@h:5432/"}}`:    "no database",
		`{"SqlSettings":{"DriverName":"mysql","DataSource":"u:p@h:3306/d"}}`:                 "tcp(host:port)",
		`{"SqlSettings":{"DataSourceReplicas":["nonsense"]}}`:                                "DataSourceReplicas[0]",
		`{"ServiceSettings":{"SiteURL":"not a url"}}`:                                        "SiteURL",
		`{"ServiceSettings":{"ListenAddress":""}}`:                                           "ListenAddress",
	}
	for raw, want := range cases {
		c, err := Parse([]byte(raw), nil)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		err = c.IsValid()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error mentioning %q", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), ":p@") {
			t.Errorf("%s: error leaks a password: %v", raw, err)
		}
	}
}

func TestDriverDSN(t *testing.T) {
	pg := "postgres://mmuser:pw@10.0.0.5:5432/mattermost?sslmode=disable&connect_timeout=10"
	if got, err := DriverDSN("postgres", pg); err != nil || got != pg {
		t.Errorf("postgres: %q %v", got, err)
	}
	my := "mmuser:pw@tcp(db1:3306)/mattermost?charset=utf8mb4,utf8&writeTimeout=30s"
	if got, err := DriverDSN("mysql", my); err != nil || got != my {
		t.Errorf("mysql: %q %v", got, err)
	}
	if got, err := DriverDSN("mysql", "mysql://"+my); err != nil || got != my {
		t.Errorf("mysql:// prefix: %q %v", got, err)
	}
	if _, err := DriverDSN("mysql", "mmuser:p@ss@tcp(db1:3306)/mattermost"); err != nil {
		t.Errorf("a password with @ must parse: %v", err)
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://mmuser:secret@db:5432/mm?sslmode=disable": "postgres://mmuser:xxxxx@db:5432/mm?sslmode=disable",
		"mmuser:secret@tcp(db:3306)/mm?charset=utf8mb4":       "mmuser:xxxxx@tcp(db:3306)/mm?charset=utf8mb4",
	} {
		if got := RedactDSN(in); got != want || strings.Contains(got, "secret") {
			t.Errorf("RedactDSN(%q) = %q", in, got)
		}
	}
}

func TestResolveAndLoadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	os.WriteFile(p, []byte(`{"SqlSettings":{"DataSource":"postgres://u:p@h:5432/d"}}`), 0o600)
	env := map[string]string{"MM_CONFIG": p}
	src := Resolve("", func(k string) string { return env[k] })
	if src.Kind != "file" || src.Path != p {
		t.Fatalf("MM_CONFIG file: %+v", src)
	}
	if src := Resolve("/flag.json", func(k string) string { return env[k] }); src.Path != "/flag.json" {
		t.Errorf("--config must win over MM_CONFIG: %+v", src)
	}
	env["MM_CONFIG"] = "postgres://mmuser:pw@db:5432/mattermost?sslmode=disable"
	if src := Resolve("", func(k string) string { return env[k] }); src.Kind != "database" || strings.Contains(src.Path, "pw") {
		t.Errorf("MM_CONFIG DSN: %+v", src)
	}
	env["MM_CONFIG"] = "mysql://mmuser:pw@tcp(db:3306)/mattermost?charset=utf8mb4,utf8"
	if src := Resolve("", func(k string) string { return env[k] }); src.Kind != "database" || DriverOfDSN(src.DSN) != "mysql" {
		t.Errorf("MM_CONFIG mysql DSN: %+v", src)
	}
	c, _, err := Load(Source{Kind: "file", Path: p}, []string{"MM_SQLSETTINGS_DRIVERNAME=mysql"})
	if err != nil {
		t.Fatal(err)
	}
	if *c.SqlSettings.DriverName != "mysql" || c.IsValid() == nil {
		t.Errorf("override to mysql with a postgres DSN must be invalid: %v", c.IsValid())
	}
	if _, _, err := Load(Source{Kind: "file", Path: filepath.Join(dir, "missing.json")}, nil); err == nil {
		t.Error("a missing config file must be an error")
	}
	os.WriteFile(p, []byte(`{"SqlSettings":`), 0o600)
	if _, _, err := Load(Source{Kind: "file", Path: p}, nil); err == nil {
		t.Error("invalid JSON must be an error")
	}
}
