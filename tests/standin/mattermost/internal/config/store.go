// TEST STAND-IN for the real server's config store read and write (GET
// /api/v4/config, PUT /api/v4/config/patch): the stored config, file or
// database row, as JSON; a patch is merged the way json.Unmarshal merges onto
// the real model.Config (objects key by key, arrays and scalars replaced), is
// validated, and a new version is written only when something changed (the
// real database store adds a Configurations row only on a change).
package config

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
)

// ReadStored returns the stored config (no MM_* overrides, like what the real
// server persists).
func ReadStored(src Source) ([]byte, error) {
	if src.Kind == "database" {
		return LoadFromDatabase(src.DSN)
	}
	return os.ReadFile(src.Path)
}

// Merge applies patch onto base: objects merge key by key, anything else is replaced.
func Merge(base, patch map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range patch {
		pm, pok := v.(map[string]any)
		bm, bok := out[k].(map[string]any)
		if pok && bok {
			out[k] = Merge(bm, pm)
		} else {
			out[k] = v
		}
	}
	return out
}

// InvalidError is a patched config the model refuses; any other error of
// PatchStored is the store's (reading it, or saving: a concurrent save of another
// server wins the unique active row, as in the real database store).
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// PatchStored merges patch into the stored config, validates and stores it.
// It returns the new config and whether a new version was written.
func PatchStored(src Source, patch []byte) ([]byte, bool, error) {
	raw, err := ReadStored(src)
	if err != nil {
		return nil, false, err
	}
	var cur, p map[string]any
	if err := json.Unmarshal(raw, &cur); err != nil {
		return nil, false, fmt.Errorf("stored config: %w", err)
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, false, fmt.Errorf("patch: %w", err)
	}
	merged := Merge(cur, p)
	out, _ := json.MarshalIndent(merged, "", "    ")
	c, err := Parse(out, nil)
	if err != nil {
		return nil, false, &InvalidError{err}
	}
	if err := c.IsValid(); err != nil {
		return nil, false, &InvalidError{err}
	}
	before, _ := json.Marshal(cur)
	after, _ := json.Marshal(merged)
	if bytes.Equal(before, after) {
		return out, false, nil
	}
	if src.Kind == "database" {
		err = SaveToDatabase(src.DSN, out)
	} else {
		err = os.WriteFile(src.Path, out, 0o600)
	}
	return out, err == nil, err
}

// GenerateKeys does what the real model's SetDefaults does to an existing config on
// start (server/public/model/config.go: SqlSettings.AtRestEncryptKey and
// FileSettings.PublicLinkSalt are generated, 32 random characters, when empty) and the
// file store then persists: the config file comes to hold secrets the server made.
// Stand-in divergence: done for the file store only (the database store's config is
// not read back by a deploy tool).
func GenerateKeys(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cur map[string]any
	if err := json.Unmarshal(raw, &cur); err != nil {
		return err
	}
	changed := false
	for _, key := range [][2]string{{"SqlSettings", "AtRestEncryptKey"}, {"FileSettings", "PublicLinkSalt"}} {
		section, _ := cur[key[0]].(map[string]any)
		if section == nil {
			section = map[string]any{}
			cur[key[0]] = section
		}
		if v, _ := section[key[1]].(string); v == "" {
			section[key[1]] = randomString(32)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	out, _ := json.MarshalIndent(cur, "", "    ")
	return os.WriteFile(path, append(out, '\n'), 0o600)
}

// randomString is the model's NewRandomString: lowercase letters and digits.
func randomString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
