// TEST STAND-IN for the real Mattermost server's config loading (used because
// the Mattermost release cannot be downloaded on the test machines and the
// server is AGPL). Reproduced boundaries: `--config PATH` or the MM_CONFIG env
// var (a file path, or a postgres:// / mysql:// DSN for the database-backed
// store in the `Configurations` table), MM_<SECTION>_<KEY> environment
// overrides applied by field name like the real server, defaults for the
// settings the stand-in uses, and the SqlSettings checks that stop start-up.
package config

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"mmdeploy.test/standin/mattermost/internal/mmid"
)

// Default values, as in Mattermost's model package.
const (
	DefaultListenAddress        = ":8065"
	DefaultMetricsListenAddress = ":8067"
	DefaultLocalModeSocket      = "/var/tmp/mattermost_local.socket"
	DefaultDataSource           = "postgres://mmuser:mostest@localhost/mattermost_test?sslmode=disable&connect_timeout=10&binary_parameters=yes"
	DefaultFileDirectory        = "./data/"
	DefaultLogDirectory         = ""
)

// Config holds the subset of Mattermost's config.json the stand-in uses.
// Field names are Mattermost's, so JSON keys and MM_* overrides match.
type Config struct {
	ServiceSettings struct {
		SiteURL                 *string
		ListenAddress           *string
		EnableLocalMode         *bool
		LocalModeSocketLocation *string
		LicenseFileLocation     *string
	}
	SqlSettings struct {
		DriverName         *string
		DataSource         *string
		DataSourceReplicas []string
		MaxIdleConns       *int
		MaxOpenConns       *int
		QueryTimeout       *int
	}
	MetricsSettings struct {
		Enable        *bool
		ListenAddress *string
	}
	FileSettings struct {
		DriverName                         *string
		Directory                          *string
		MaxFileSize                        *int64
		AmazonS3AccessKeyId                *string
		AmazonS3SecretAccessKey            *string
		AmazonS3Bucket                     *string
		AmazonS3PathPrefix                 *string
		AmazonS3Region                     *string
		AmazonS3Endpoint                   *string
		AmazonS3SSL                        *bool
		AmazonS3SignV2                     *bool
		AmazonS3SSE                        *bool
		AmazonS3Trace                      *bool
		AmazonS3RequestTimeoutMilliseconds *int64
	}
	EmailSettings struct {
		SendPushNotifications    *bool
		PushNotificationServer   *string
		PushNotificationContents *string
	}
	ElasticsearchSettings struct {
		ConnectionURL         *string
		Backend               *string
		Username              *string
		Password              *string
		EnableIndexing        *bool
		EnableSearching       *bool
		EnableAutocomplete    *bool
		Sniff                 *bool
		IndexPrefix           *string
		SkipTLSVerification   *bool
		RequestTimeoutSeconds *int
		LiveIndexingBatchSize *int
		BatchSize             *int
	}
	LogSettings struct {
		EnableConsole *bool
		EnableFile    *bool
		FileLocation  *string
	}
	JobSettings struct {
		RunJobs      *bool
		RunScheduler *bool
	}
	TeamSettings struct {
		SiteName *string
	}
	ClusterSettings struct {
		Enable                  *bool
		ClusterName             *string
		OverrideHostname        *string
		NetworkInterface        *string
		BindAddress             *string
		AdvertiseAddress        *string
		UseIPAddress            *bool
		EnableGossipEncryption  *bool
		EnableGossipCompression *bool
		GossipPort              *int
		ReadOnlyConfig          *bool
	}
}

func sp(s string) *string { return &s }
func bp(b bool) *bool     { return &b }
func ip(i int) *int       { return &i }
func i64(i int64) *int64  { return &i }

func defStr(p **string, v string) {
	if *p == nil {
		*p = sp(v)
	}
}

func defBool(p **bool, v bool) {
	if *p == nil {
		*p = bp(v)
	}
}

func defInt(p **int, v int) {
	if *p == nil {
		*p = ip(v)
	}
}

// SetDefaults fills unset settings with Mattermost's defaults. Note: like the
// real model, DriverName and DataSource get defaults only when absent (nil);
// an explicit empty string stays empty and is rejected by IsValid.
func (c *Config) SetDefaults() {
	s := &c.ServiceSettings
	if s.SiteURL == nil {
		s.SiteURL = sp("")
	}
	if s.ListenAddress == nil {
		s.ListenAddress = sp(DefaultListenAddress)
	}
	if s.EnableLocalMode == nil {
		s.EnableLocalMode = bp(false)
	}
	if s.LocalModeSocketLocation == nil || *s.LocalModeSocketLocation == "" {
		s.LocalModeSocketLocation = sp(DefaultLocalModeSocket)
	}
	q := &c.SqlSettings
	if q.DriverName == nil {
		q.DriverName = sp("postgres")
	}
	if q.DataSource == nil {
		q.DataSource = sp(DefaultDataSource)
	}
	if q.DataSourceReplicas == nil {
		q.DataSourceReplicas = []string{}
	}
	if q.MaxIdleConns == nil {
		q.MaxIdleConns = ip(50)
	}
	if q.MaxOpenConns == nil {
		q.MaxOpenConns = ip(100)
	}
	if q.QueryTimeout == nil {
		q.QueryTimeout = ip(30)
	}
	m := &c.MetricsSettings
	if m.Enable == nil {
		m.Enable = bp(false)
	}
	if m.ListenAddress == nil {
		m.ListenAddress = sp(DefaultMetricsListenAddress)
	}
	f := &c.FileSettings
	if f.DriverName == nil {
		f.DriverName = sp("local")
	}
	if f.Directory == nil {
		f.Directory = sp(DefaultFileDirectory)
	}
	l := &c.LogSettings
	if l.EnableConsole == nil {
		l.EnableConsole = bp(true)
	}
	if l.EnableFile == nil {
		l.EnableFile = bp(true)
	}
	if l.FileLocation == nil {
		l.FileLocation = sp(DefaultLogDirectory)
	}
	j := &c.JobSettings
	if j.RunJobs == nil {
		j.RunJobs = bp(true)
	}
	if j.RunScheduler == nil {
		j.RunScheduler = bp(true)
	}
	if c.TeamSettings.SiteName == nil {
		c.TeamSettings.SiteName = sp("Mattermost")
	}
	cs := &c.ClusterSettings
	defBool(&cs.Enable, false)
	defStr(&cs.ClusterName, "")
	defStr(&cs.OverrideHostname, "")
	defStr(&cs.NetworkInterface, "")
	defStr(&cs.BindAddress, "")
	defStr(&cs.AdvertiseAddress, "")
	defBool(&cs.UseIPAddress, true)
	defBool(&cs.EnableGossipEncryption, true)
	defBool(&cs.EnableGossipCompression, true)
	defInt(&cs.GossipPort, 8074)
	defBool(&cs.ReadOnlyConfig, true)
	defStr(&s.LicenseFileLocation, "")
	if f.MaxFileSize == nil {
		f.MaxFileSize = i64(100 * 1024 * 1024)
	}
	defStr(&f.AmazonS3AccessKeyId, "")
	defStr(&f.AmazonS3SecretAccessKey, "")
	defStr(&f.AmazonS3Bucket, "")
	defStr(&f.AmazonS3PathPrefix, "")
	defStr(&f.AmazonS3Region, "")
	defStr(&f.AmazonS3Endpoint, "s3.amazonaws.com")
	defBool(&f.AmazonS3SSL, true)
	defBool(&f.AmazonS3SignV2, false)
	defBool(&f.AmazonS3SSE, false)
	defBool(&f.AmazonS3Trace, false)
	if f.AmazonS3RequestTimeoutMilliseconds == nil {
		f.AmazonS3RequestTimeoutMilliseconds = i64(30000)
	}
	e := &c.EmailSettings
	defBool(&e.SendPushNotifications, true)
	// Divergence: the real default server is Mattermost's hosted push service;
	// the stand-in never contacts it, so its default is empty.
	defStr(&e.PushNotificationServer, "")
	defStr(&e.PushNotificationContents, "full")
	es := &c.ElasticsearchSettings
	defStr(&es.ConnectionURL, "http://localhost:9200")
	defStr(&es.Backend, "elasticsearch")
	defStr(&es.Username, "elastic")
	defStr(&es.Password, "changeme")
	defBool(&es.EnableIndexing, false)
	defBool(&es.EnableSearching, false)
	defBool(&es.EnableAutocomplete, false)
	defBool(&es.Sniff, true)
	defStr(&es.IndexPrefix, "")
	defBool(&es.SkipTLSVerification, false)
	defInt(&es.RequestTimeoutSeconds, 30)
	defInt(&es.LiveIndexingBatchSize, 10)
	defInt(&es.BatchSize, 10000)
}

// IsValid applies the start-up checks the stand-in shares with the real
// server's model (SqlSettings driver and data source, listen address, site URL).
func (c *Config) IsValid() error {
	d := *c.SqlSettings.DriverName
	if d != "postgres" && d != "mysql" {
		return fmt.Errorf("SqlSettings.DriverName %q is invalid: must be postgres or mysql (model.config.is_valid.sql_driver.app_error)", d)
	}
	if strings.TrimSpace(*c.SqlSettings.DataSource) == "" {
		return errors.New("SqlSettings.DataSource is empty (model.config.is_valid.sql_data_src.app_error)")
	}
	if _, err := DriverDSN(d, *c.SqlSettings.DataSource); err != nil {
		return fmt.Errorf("SqlSettings.DataSource: %w", err)
	}
	for i, r := range c.SqlSettings.DataSourceReplicas {
		if _, err := DriverDSN(d, r); err != nil {
			return fmt.Errorf("SqlSettings.DataSourceReplicas[%d]: %w", i, err)
		}
	}
	if *c.ServiceSettings.ListenAddress == "" {
		return errors.New("ServiceSettings.ListenAddress is empty (model.config.is_valid.listen_address.app_error)")
	}
	if d := *c.FileSettings.DriverName; d != "local" && d != "amazons3" {
		return fmt.Errorf("FileSettings.DriverName %q is invalid: must be local or amazons3 (model.config.is_valid.file_driver.app_error)", d)
	}
	if b := *c.ElasticsearchSettings.Backend; b != "elasticsearch" && b != "opensearch" {
		return fmt.Errorf("ElasticsearchSettings.Backend %q is invalid: must be elasticsearch or opensearch (model.config.is_valid.elastic_search.invalid_backend.app_error)", b)
	}
	if *c.ElasticsearchSettings.EnableSearching && !*c.ElasticsearchSettings.EnableIndexing {
		return errors.New("ElasticsearchSettings.EnableIndexing must be true when EnableSearching is (model.config.is_valid.elastic_search.enable_searching.app_error)")
	}
	if u := *c.ServiceSettings.SiteURL; u != "" {
		pu, err := url.ParseRequestURI(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") {
			return fmt.Errorf("ServiceSettings.SiteURL %q is invalid (model.config.is_valid.site_url.app_error)", u)
		}
	}
	return nil
}

// DriverDSN checks a Mattermost DataSource for the driver and returns the
// string the Go SQL driver takes. Postgres data sources are URLs
// (postgres://user:pw@host:5432/db?sslmode=disable&connect_timeout=10);
// MySQL ones are go-sql-driver DSNs (user:pw@tcp(host:3306)/db?charset=...),
// optionally prefixed with mysql:// as in MM_CONFIG.
func DriverDSN(driver, ds string) (string, error) {
	switch driver {
	case "postgres":
		if !strings.HasPrefix(ds, "postgres://") && !strings.HasPrefix(ds, "postgresql://") {
			return "", errors.New("postgres data source must start with postgres://")
		}
		u, err := url.Parse(ds)
		if err != nil {
			return "", fmt.Errorf("not a postgres URL: %v", redactErr(err))
		}
		if u.Scheme != "postgres" && u.Scheme != "postgresql" {
			return "", fmt.Errorf("postgres data source must start with postgres://, got scheme %q", u.Scheme)
		}
		if u.Host == "" {
			return "", errors.New("postgres data source has no host")
		}
		if strings.Trim(u.Path, "/") == "" {
			return "", errors.New("postgres data source has no database name")
		}
		return ds, nil
	case "mysql":
		d := strings.TrimPrefix(ds, "mysql://")
		at := strings.LastIndex(d, "@")
		slash := strings.Index(d[at+1:], "/")
		if at < 0 || slash < 0 {
			return "", errors.New("mysql data source must look like user:password@tcp(host:3306)/database?charset=utf8mb4,utf8")
		}
		addr := d[at+1 : at+1+slash]
		if !(strings.HasPrefix(addr, "tcp(") || strings.HasPrefix(addr, "unix(")) || !strings.HasSuffix(addr, ")") {
			return "", fmt.Errorf("mysql data source address %q must be tcp(host:port) or unix(path)", addr)
		}
		return d, nil
	}
	return "", fmt.Errorf("unknown driver %q", driver)
}

func redactErr(err error) string {
	// url.Parse errors quote the input, which may carry a password.
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "parse error"
}

// IsDatabaseDSN tells whether an MM_CONFIG value names a database store.
func IsDatabaseDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") || strings.HasPrefix(s, "mysql://")
}

// DriverOfDSN returns postgres or mysql for a database config DSN.
func DriverOfDSN(s string) string {
	if strings.HasPrefix(s, "mysql://") {
		return "mysql"
	}
	return "postgres"
}

// Source says where the config came from, for log lines (never a password).
type Source struct {
	Kind string // "file" or "database"
	Path string // file path, or the redacted DSN
	DSN  string // for database sources
}

// DefaultPath is config/config.json under the install dir (the parent of
// the directory holding the binary), as the real server resolves it.
func DefaultPath() string {
	exe, err := os.Executable()
	if err == nil {
		if r, err2 := filepath.EvalSymlinks(exe); err2 == nil {
			exe = r
		}
		return filepath.Join(filepath.Dir(filepath.Dir(exe)), "config", "config.json")
	}
	return filepath.Join("config", "config.json")
}

// Resolve picks the config source: --config flag, else MM_CONFIG, else the default path.
func Resolve(flagValue string, env func(string) string) Source {
	v := flagValue
	if v == "" {
		v = env("MM_CONFIG")
	}
	if v == "" {
		v = DefaultPath()
	}
	if IsDatabaseDSN(v) {
		return Source{Kind: "database", Path: RedactDSN(v), DSN: v}
	}
	if !filepath.IsAbs(v) {
		// The real server looks a relative path up from the working directory
		// and then from the install dir's config/ parent.
		if _, err := os.Stat(v); err != nil {
			alt := filepath.Join(filepath.Dir(filepath.Dir(DefaultPath())), v)
			if _, err := os.Stat(alt); err == nil {
				v = alt
			}
		}
	}
	return Source{Kind: "file", Path: v}
}

// RedactDSN hides the password of a DSN for logs.
func RedactDSN(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	head := s[:at]
	if c := strings.LastIndex(head, ":"); c >= 0 {
		return head[:c+1] + "xxxxx" + s[at:]
	}
	return s
}

// Parse unmarshals config.json bytes, applies MM_* overrides and defaults.
func Parse(raw []byte, environ []string) (*Config, error) {
	var c Config
	if len(strings.TrimSpace(string(raw))) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("parsing config JSON: %w", err)
		}
	}
	if err := ApplyEnv(&c, environ); err != nil {
		return nil, err
	}
	c.SetDefaults()
	return &c, nil
}

// Load reads the config from its source, returns it with the raw bytes as stored.
func Load(src Source, environ []string) (*Config, []byte, error) {
	var raw []byte
	var err error
	switch src.Kind {
	case "file":
		raw, err = os.ReadFile(src.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to load configuration from %s: %w", src.Path, err)
		}
	case "database":
		raw, err = LoadFromDatabase(src.DSN)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to load configuration from database %s: %w", src.Path, err)
		}
	default:
		return nil, nil, fmt.Errorf("unknown config source %q", src.Kind)
	}
	c, err := Parse(raw, environ)
	return c, raw, err
}

// ApplyEnv applies MM_<SECTION>_<KEY> overrides the way the real server does:
// the name (after MM_) is split on the first underscore, each part matched
// case-insensitively against a field name of the config struct. Unknown
// names are ignored. []string values are split on spaces.
func ApplyEnv(c *Config, environ []string) error {
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		k = strings.ToUpper(k)
		if !strings.HasPrefix(k, "MM_") || k == "MM_CONFIG" {
			continue
		}
		if err := applyEnvKey(strings.TrimPrefix(k, "MM_"), v, reflect.ValueOf(c).Elem()); err != nil {
			return fmt.Errorf("environment override %s: %w", k, err)
		}
	}
	return nil
}

func applyEnvKey(key, value string, rv reflect.Value) error {
	parts := strings.SplitN(key, "_", 2)
	f := rv.FieldByNameFunc(func(n string) bool { return strings.ToUpper(n) == parts[0] })
	if !f.IsValid() {
		return nil
	}
	if f.Kind() == reflect.Struct {
		if len(parts) < 2 {
			return nil
		}
		return applyEnvKey(parts[1], value, f)
	}
	if len(parts) > 1 {
		return nil
	}
	t := f.Type()
	if t.Kind() == reflect.Pointer {
		nv := reflect.New(t.Elem())
		if err := setScalar(nv.Elem(), value); err != nil {
			return err
		}
		f.Set(nv)
		return nil
	}
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String {
		var items []string
		for _, s := range strings.Split(value, " ") {
			if s != "" {
				items = append(items, s)
			}
		}
		if items == nil {
			items = []string{}
		}
		f.Set(reflect.ValueOf(items))
		return nil
	}
	return setScalar(f, value)
}

func setScalar(f reflect.Value, value string) error {
	switch f.Kind() {
	case reflect.String:
		f.SetString(value)
	case reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(i)
	default:
		return fmt.Errorf("unsupported kind %s", f.Kind())
	}
	return nil
}

// --- database-backed config store (MM_CONFIG=postgres://... or mysql://...) ---

// OpenFunc opens a *sql.DB; set by the store package so this package needs no driver.
var OpenFunc func(driver, dsn string) (*sql.DB, error)

func configurationsDDL(driver string) []string {
	if driver == "mysql" {
		return []string{`CREATE TABLE IF NOT EXISTS Configurations (
			Id VARCHAR(26) PRIMARY KEY, Value MEDIUMTEXT NOT NULL,
			CreateAt BIGINT NOT NULL, Active BOOLEAN NULL UNIQUE)`,
			`CREATE TABLE IF NOT EXISTS ConfigurationFiles (
			Name VARCHAR(64) PRIMARY KEY, Data MEDIUMTEXT NOT NULL,
			CreateAt BIGINT NOT NULL, UpdateAt BIGINT NOT NULL)`}
	}
	return []string{`CREATE TABLE IF NOT EXISTS Configurations (
		Id VARCHAR(26) PRIMARY KEY, Value TEXT NOT NULL,
		CreateAt BIGINT NOT NULL, Active BOOLEAN NULL UNIQUE)`,
		`CREATE TABLE IF NOT EXISTS ConfigurationFiles (
		Name VARCHAR(64) PRIMARY KEY, Data TEXT NOT NULL,
		CreateAt BIGINT NOT NULL, UpdateAt BIGINT NOT NULL)`}
}

func openConfigDB(dsn string) (*sql.DB, string, error) {
	if OpenFunc == nil {
		return nil, "", errors.New("no SQL driver registered")
	}
	driver := DriverOfDSN(dsn)
	d, err := DriverDSN(driver, dsn)
	if err != nil {
		return nil, "", err
	}
	db, err := OpenFunc(driver, d)
	if err != nil {
		return nil, "", err
	}
	for _, q := range configurationsDDL(driver) {
		if _, err := db.Exec(q); err != nil {
			db.Close()
			return nil, "", err
		}
	}
	return db, driver, nil
}

// LoadFromDatabase returns the active row of the Configurations table. When
// there is none it stores a default config first, as the real server does;
// the stand-in's default points SqlSettings at the same database as MM_CONFIG.
func LoadFromDatabase(dsn string) ([]byte, error) {
	db, driver, err := openConfigDB(dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var v string
	err = db.QueryRow(`SELECT Value FROM Configurations WHERE Active = TRUE`).Scan(&v)
	if err == nil {
		return []byte(v), nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	var c Config
	c.SqlSettings.DriverName = sp(driver)
	c.SqlSettings.DataSource = sp(strings.TrimPrefix(dsn, "mysql://"))
	c.SetDefaults()
	raw, _ := json.MarshalIndent(&c, "", "    ")
	if err := SaveToDatabase(dsn, raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// SaveToDatabase stores raw as the new active configuration (the previous one
// stays as history with Active = NULL), in one transaction.
func SaveToDatabase(dsn string, raw []byte) error {
	if !json.Valid(raw) {
		return errors.New("config is not valid JSON")
	}
	db, _, err := openConfigDB(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`UPDATE Configurations SET Active = NULL WHERE Active = TRUE`); err != nil {
		return err
	}
	q := `INSERT INTO Configurations (Id, Value, CreateAt, Active) VALUES ($1, $2, $3, TRUE)`
	if DriverOfDSN(dsn) == "mysql" {
		q = `INSERT INTO Configurations (Id, Value, CreateAt, Active) VALUES (?, ?, ?, TRUE)`
	}
	if _, err := tx.Exec(q, mmid.New(), string(raw), time.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}
