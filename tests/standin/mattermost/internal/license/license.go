// TEST STAND-IN for the real Mattermost server's license check (the real
// server is AGPL and its release cannot be downloaded here). Reproduced: the
// license file format (base64 of the license JSON followed by a 256-byte RSA
// PKCS#1 v1.5 signature of its SHA-512), the model.License JSON of the Apache-2.0
// model package, the start/expiry checks and the feature flags the server gates
// on (cluster, elastic_search, any license for read replicas), and the
// /api/v4/license/client?format=old map. Divergence: real licenses are signed by
// Mattermost's private key; the stand-in trusts only the project's TEST key,
// whose public half is compiled in at build time (-X ...license.PublicKey,
// base64 DER, see tests/standin/build.sh). A real license is refused here, and a
// stand-in test license would be refused by the real server.
package license

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mattermost/mattermost/server/public/model"
)

// PublicKey is the base64 DER (PKIX) of the test signing key, set by the build.
var PublicKey = ""

const sigLen = 256 // RSA-2048, as the real license signature

// Verify checks a license file's bytes against the compiled-in key and returns
// the license. It does not check dates (see Active).
func Verify(signed []byte) (*model.License, error) {
	if PublicKey == "" {
		return nil, errors.New("this stand-in build has no license public key")
	}
	der, err := base64.StdEncoding.DecodeString(PublicKey)
	if err != nil {
		return nil, fmt.Errorf("bad compiled-in public key: %w", err)
	}
	pk, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("bad compiled-in public key: %w", err)
	}
	rpk, ok := pk.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("compiled-in public key is not RSA")
	}
	return VerifyWith(rpk, signed)
}

// VerifyWith checks signed against an explicit key.
func VerifyWith(pk *rsa.PublicKey, signed []byte) (*model.License, error) {
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(signed)))
	if err != nil {
		return nil, fmt.Errorf("encountered error decoding license: %w", err)
	}
	for len(decoded) > 0 && decoded[len(decoded)-1] == 0 {
		decoded = decoded[:len(decoded)-1]
	}
	if len(decoded) <= sigLen {
		return nil, errors.New("signed license not long enough")
	}
	plain, sig := decoded[:len(decoded)-sigLen], decoded[len(decoded)-sigLen:]
	d := sha512.Sum512(plain)
	if err := rsa.VerifyPKCS1v15(pk, crypto.SHA512, d[:], sig); err != nil {
		return nil, fmt.Errorf("invalid signature: %w", err)
	}
	var l model.License
	if err := json.Unmarshal(plain, &l); err != nil {
		return nil, fmt.Errorf("license JSON: %w", err)
	}
	if l.Features == nil {
		l.Features = &model.Features{}
	}
	l.Features.SetDefaults()
	if l.Customer == nil {
		l.Customer = &model.Customer{}
	}
	return &l, nil
}

// Sign returns the license file bytes for l, signed with key.
func Sign(key *rsa.PrivateKey, l *model.License) ([]byte, error) {
	plain, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	d := sha512.Sum512(plain)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA512, d[:])
	if err != nil {
		return nil, err
	}
	return []byte(base64.StdEncoding.EncodeToString(append(plain, sig...))), nil
}

// Active tells whether a verified license is in force now, as the real
// server decides (started and not expired; the real server also has a grace
// period after expiry for some features, which the stand-in does not model).
func Active(l *model.License) error {
	if l == nil {
		return errors.New("no license")
	}
	if !l.IsStarted() {
		return errors.New("license has not started yet")
	}
	if l.IsExpired() {
		return errors.New("license has expired")
	}
	return nil
}

// Has tells whether l is active and grants a feature ("cluster", "elastic_search", "metrics").
func Has(l *model.License, feature string) bool {
	if Active(l) != nil {
		return false
	}
	f := l.Features
	var p *bool
	switch feature {
	case "cluster":
		p = f.Cluster
	case "elastic_search":
		p = f.Elasticsearch
	case "metrics":
		p = f.Metrics
	case "mhpns":
		p = f.MHPNS
	case "id_loaded":
		p = f.IDLoadedPushNotifications
	}
	return p != nil && *p
}

// ClientMap is GET /api/v4/license/client?format=old for a user allowed to
// read license information (the real GetClientLicense subset the stand-in uses).
func ClientMap(l *model.License) map[string]string {
	m := map[string]string{"IsLicensed": strconv.FormatBool(l != nil)}
	if l == nil {
		return m
	}
	b := func(p *bool) string { return strconv.FormatBool(p != nil && *p) }
	f := l.Features
	users := 0
	if f.Users != nil {
		users = *f.Users
	}
	m["Id"] = l.Id
	m["SkuName"] = l.SkuName
	m["SkuShortName"] = l.SkuShortName
	m["Users"] = strconv.Itoa(users)
	m["LDAP"] = b(f.LDAP)
	m["LDAPGroups"] = b(f.LDAPGroups)
	m["MFA"] = b(f.MFA)
	m["SAML"] = b(f.SAML)
	m["Cluster"] = b(f.Cluster)
	m["Metrics"] = b(f.Metrics)
	m["GoogleOAuth"] = b(f.GoogleOAuth)
	m["Office365OAuth"] = b(f.Office365OAuth)
	m["OpenId"] = b(f.OpenId)
	m["Compliance"] = b(f.Compliance)
	m["MHPNS"] = b(f.MHPNS)
	m["Announcement"] = b(f.Announcement)
	m["Elasticsearch"] = b(f.Elasticsearch)
	m["DataRetention"] = b(f.DataRetention)
	m["IDLoadedPushNotifications"] = b(f.IDLoadedPushNotifications)
	m["IssuedAt"] = strconv.FormatInt(l.IssuedAt, 10)
	m["StartsAt"] = strconv.FormatInt(l.StartsAt, 10)
	m["ExpiresAt"] = strconv.FormatInt(l.ExpiresAt, 10)
	m["Name"] = l.Customer.Name
	m["Email"] = l.Customer.Email
	m["Company"] = l.Customer.Company
	m["MessageExport"] = b(f.MessageExport)
	m["CustomPermissionsSchemes"] = b(f.CustomPermissionsSchemes)
	m["GuestAccounts"] = b(f.GuestAccounts)
	m["SharedChannels"] = b(f.SharedChannels)
	m["Cloud"] = b(f.Cloud)
	m["IsTrial"] = strconv.FormatBool(l.IsTrial)
	m["IsGovSku"] = strconv.FormatBool(l.IsGovSku)
	return m
}

// Sanitized is the map a user without the read-license permission gets.
func Sanitized(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		switch k {
		case "Id", "Name", "Email", "IssuedAt", "StartsAt", "ExpiresAt", "SkuName":
			continue
		}
		out[k] = v
	}
	return out
}
