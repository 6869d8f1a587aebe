// TEST STAND-IN for the real server's license-gated (Enterprise) features and
// their API (the server is AGPL and its Enterprise code is not public; see
// internal/license and internal/cluster). Reproduced boundaries:
//   - the license, loaded like the real server: MM_LICENSE (the license text),
//     else the active license stored in the database (Systems.ActiveLicenseId,
//     Licenses table), else ServiceSettings.LicenseFileLocation (default
//     config/mattermost.mattermost-license), which is then stored in the
//     database; POST/DELETE /api/v4/license; GET /api/v4/license/client?format=old;
//   - cluster mode only with a license granting "cluster", GET /api/v4/cluster/status;
//   - POST /api/v4/database/recycle.
//
// Without a valid license the gated features stay off and the log says which.
package server

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/mattermost/mattermost/server/public/model"

	"mmdeploy.test/standin/mattermost/internal/cluster"
	"mmdeploy.test/standin/mattermost/internal/config"
	"mmdeploy.test/standin/mattermost/internal/license"
)

// License returns the license in force, or nil.
func (s *Server) License() *model.License {
	l := s.license.Load()
	if l == nil || license.Active(l) != nil {
		return nil
	}
	return l
}

func licenseFilePath(cfg *config.Config) string {
	if p := *cfg.ServiceSettings.LicenseFileLocation; p != "" {
		return p
	}
	return filepath.Join(filepath.Dir(config.DefaultPath()), "mattermost.mattermost-license")
}

// loadLicense finds, verifies and installs the license, logging the outcome.
func (s *Server) loadLicense() {
	var raw []byte
	var from string
	fromFile := false
	if v := os.Getenv("MM_LICENSE"); v != "" {
		raw, from = []byte(v), "environment MM_LICENSE"
	} else if b, err := s.Store.ActiveLicense(); err == nil {
		raw, from = b, "database"
	} else {
		p := licenseFilePath(s.Cfg)
		if b, err := os.ReadFile(p); err == nil {
			s.Log.Log("info", "License key has not been uploaded. Loading license key from disk.", "filename", p)
			raw, from, fromFile = b, p, true
		}
	}
	if raw == nil {
		s.Log.Log("info", "No license: Enterprise features are inactive (cluster, Elasticsearch/OpenSearch, read replicas)")
		return
	}
	l, err := license.Verify(raw)
	if err != nil {
		s.Log.Log("error", "Found license key but it appears to be invalid: Enterprise features are inactive", "source", from, "error", err.Error())
		return
	}
	if err := license.Active(l); err != nil {
		s.Log.Log("error", "License is not in force: Enterprise features are inactive", "source", from, "license_id", l.Id, "error", err.Error())
		return
	}
	s.license.Store(l)
	if fromFile {
		if err := s.Store.SaveLicense(l.Id, raw); err != nil {
			s.Log.Log("warn", "Could not store the license in the database", "error", err.Error())
		}
	}
	s.Log.Log("info", "License key valid", "source", from, "license_id", l.Id, "sku", l.SkuShortName,
		"cluster", license.Has(l, "cluster"), "elastic_search", license.Has(l, "elastic_search"))
}

// startCluster joins the cluster when ClusterSettings.Enable and the license allow it.
func (s *Server) startCluster() error {
	cs := &s.Cfg.ClusterSettings
	if !*cs.Enable {
		return nil
	}
	if !license.Has(s.License(), "cluster") {
		s.Log.Log("warn", "ClusterSettings.Enable is true but there is no license for High Availability: cluster mode is inactive, this node runs alone (no gossip, no cluster messages)",
			"cluster_name", *cs.ClusterName)
		return nil
	}
	if *cs.ClusterName == "" {
		s.Log.Log("error", "ClusterSettings.ClusterName is empty: cluster mode is inactive")
		return nil
	}
	var key []byte
	if *cs.EnableGossipEncryption {
		k, err := s.gossipKey()
		if err != nil {
			return fmt.Errorf("cluster encryption key: %w", err)
		}
		key = k
	}
	c, err := cluster.Start(cluster.Options{
		NodeID: s.NodeID, ClusterName: *cs.ClusterName, GossipPort: *cs.GossipPort, BindAddress: *cs.BindAddress,
		AdvertiseAddress: *cs.AdvertiseAddress, OverrideHostname: *cs.OverrideHostname, UseIPAddress: *cs.UseIPAddress,
		SecretKey: key, Compression: *cs.EnableGossipCompression, Info: s.clusterInfo, Store: s.Store, Log: s.Log.Log,
		DiscoveryEvery: discoveryInterval(),
	})
	if err != nil {
		return err
	}
	c.RegisterHandler(model.ClusterEventPublish, func(m *model.ClusterMessage) {
		var ev wsEvent
		if json.Unmarshal(m.Data, &ev) == nil {
			s.Hub.deliver(s, &ev)
		}
	})
	s.Cluster = c
	return nil
}

// gossipKey is the cluster-wide key in Systems.ClusterEncryptionKey, made by the first node.
func (s *Server) gossipKey() ([]byte, error) {
	b := make([]byte, 16)
	rand.Read(b)
	v, err := s.Store.SystemSetIfAbsent("ClusterEncryptionKey", base64.StdEncoding.EncodeToString(b))
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(v)
}

// ConfigHash is the md5 of the effective config's JSON (defaults and MM_*
// overrides applied) without what is per node by design: the cluster addresses
// and the addresses it listens on (the real server's hash is of the client
// config, which carries none of them), so that nodes with the same settings
// agree and any other difference shows.
func ConfigHash(cfg *config.Config) string {
	c := *cfg
	cs, ss, ms := c.ClusterSettings, c.ServiceSettings, c.MetricsSettings
	empty := ""
	cs.AdvertiseAddress, cs.OverrideHostname, cs.BindAddress, cs.NetworkInterface = &empty, &empty, &empty, &empty
	ss.ListenAddress, ms.ListenAddress = &empty, &empty
	c.ClusterSettings, c.ServiceSettings, c.MetricsSettings = cs, ss, ms
	b, _ := json.Marshal(&c)
	return fmt.Sprintf("%x", md5.Sum(b))
}

func (s *Server) clusterInfo() model.ClusterInfo {
	host, _ := os.Hostname()
	if h := *s.Cfg.ClusterSettings.OverrideHostname; h != "" {
		host = h
	}
	ip := *s.Cfg.ClusterSettings.AdvertiseAddress
	return model.ClusterInfo{Id: s.NodeID, Version: Version, SchemaVersion: s.schemaVersion, ConfigHash: s.configHash,
		IPAddress: ip, Hostname: host}
}

// ---- API ----

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request, ss *session) {
	if !ss.isAdmin() {
		s.forbidden(w, "sysconsole_read_environment_high_availability")
		return
	}
	infos := []model.ClusterInfo{}
	if s.Cluster != nil {
		infos = s.Cluster.Infos()
	}
	writeJSON(w, http.StatusOK, infos)
}

func (s *Server) clientLicense(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("format") != "old" {
		s.writeErr(w, http.StatusNotImplemented, "api.license.client.old_format.app_error", "New format for the client license is not supported yet. Please specify format=old in the query string.", "")
		return
	}
	m := license.ClientMap(s.License())
	ss, err := s.sessionFor(firstToken(r))
	if !isLocal(r) && (err != nil || !ss.isAdmin()) {
		m = license.Sanitized(m)
	}
	writeJSON(w, http.StatusOK, m)
}

func firstToken(r *http.Request) string {
	t, _ := tokenFrom(r)
	return t
}

// uploadLicense is POST /api/v4/license (multipart "license"): verified, stored
// in the database and applied. Like the real server, features that start at
// boot (cluster) take effect on the next start.
func (s *Server) uploadLicense(w http.ResponseWriter, r *http.Request, ss *session) {
	if !ss.isAdmin() {
		s.forbidden(w, "manage_license_information")
		return
	}
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		s.writeErr(w, http.StatusBadRequest, "api.license.add_license.parse.app_error", "Unable to parse the license.", err.Error())
		return
	}
	f, _, err := r.FormFile("license")
	if err != nil {
		s.writeErr(w, http.StatusBadRequest, "api.license.add_license.no_file.app_error", "No file under 'license' in request.", "")
		return
	}
	raw, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	l, err := license.Verify(raw)
	if err == nil {
		err = license.Active(l)
	}
	if err != nil {
		s.writeErr(w, http.StatusBadRequest, "model.license.invalid", "Invalid license file.", err.Error())
		return
	}
	if err := s.Store.SaveLicense(l.Id, raw); err != nil {
		s.writeErr(w, http.StatusInternalServerError, "api.license.add_license.save.app_error", "License did not save properly.", err.Error())
		return
	}
	s.license.Store(l)
	s.Store.Licensed = func() bool { return s.License() != nil }
	s.Log.Log("info", "License uploaded", "license_id", l.Id)
	writeJSON(w, http.StatusCreated, l)
}

func (s *Server) removeLicense(w http.ResponseWriter, r *http.Request, ss *session) {
	if !ss.isAdmin() {
		s.forbidden(w, "manage_license_information")
		return
	}
	if err := s.Store.RemoveLicense(); err != nil {
		s.writeErr(w, http.StatusInternalServerError, "api.license.remove_license.remove.app_error", "License did not remove properly.", err.Error())
		return
	}
	s.license.Store(nil)
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
}

// recycleDB is POST /api/v4/database/recycle: reconnect to the database with
// the SqlSettings of the config as it is stored now (the documented way to
// switch an HA cluster to a new DataSource without restarting).
func (s *Server) recycleDB(w http.ResponseWriter, r *http.Request, ss *session) {
	if !ss.isAdmin() {
		s.forbidden(w, "sysconsole_write_environment_database")
		return
	}
	cfg, _, err := config.Load(s.Src, os.Environ())
	if err == nil {
		err = cfg.IsValid()
	}
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "api.admin.recycle_db.config.app_error", "Unable to read the configuration.", config.RedactDSN(err.Error()))
		return
	}
	if err := s.Store.Recycle(cfg); err != nil {
		s.writeErr(w, http.StatusInternalServerError, "api.admin.recycle_db.app_error", "Unable to recycle the database connections.", config.RedactDSN(err.Error()))
		return
	}
	s.Cfg.SqlSettings = cfg.SqlSettings
	s.configHash = ConfigHash(s.Cfg)
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
}
