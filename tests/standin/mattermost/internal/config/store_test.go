// Tests for the TEST STAND-IN config patch: merge semantics, validation, no
// write without a change (file store).
package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPatchStoredMergesValidatesAndWritesOnlyOnChange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(p, []byte(`{"ServiceSettings":{"SiteURL":"","EnableCustomEmoji":false},
		"SqlSettings":{"DriverName":"postgres","DataSource":"postgres://u:p@h:5432/d","DataSourceReplicas":["postgres://u:p@r1:5432/d"]}}`), 0o600)
	src := Source{Kind: "file", Path: p}
	patch := `{"ServiceSettings":{"EnableCustomEmoji":true},"SqlSettings":{"DataSourceReplicas":[]}}`
	out, changed, err := PatchStored(src, []byte(patch))
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	s := string(out)
	if !strings.Contains(s, `"EnableCustomEmoji": true`) || !strings.Contains(s, `"DataSourceReplicas": []`) ||
		!strings.Contains(s, `"DataSource": "postgres://u:p@h:5432/d"`) {
		t.Fatal(s)
	}
	if _, changed, err := PatchStored(src, []byte(patch)); err != nil || changed {
		t.Fatalf("second patch: changed=%v err=%v", changed, err)
	}
	if _, _, err := PatchStored(src, []byte(`{"SqlSettings":{"DriverName":"oracle"}}`)); err == nil {
		t.Fatal("an invalid patch was stored")
	}
}

func TestGenerateKeysLikeTheRealServerOnStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"SqlSettings": {"AtRestEncryptKey": ""}, "ServiceSettings": {"SiteURL": "x"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKeys(path); err != nil {
		t.Fatal(err)
	}
	var cfg map[string]map[string]any
	raw, _ := os.ReadFile(path)
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	key, salt := cfg["SqlSettings"]["AtRestEncryptKey"].(string), cfg["FileSettings"]["PublicLinkSalt"].(string)
	if len(key) != 32 || len(salt) != 32 || cfg["ServiceSettings"]["SiteURL"] != "x" {
		t.Fatalf("got %s", raw)
	}
	before, _ := os.ReadFile(path)
	if err := GenerateKeys(path); err != nil { // kept once made
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("keys were regenerated")
	}
}
