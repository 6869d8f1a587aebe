package license

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
)

func testLicense(start, end time.Time, cluster bool) *model.License {
	f := &model.Features{Cluster: model.NewPointer(cluster), Elasticsearch: model.NewPointer(true), FutureFeatures: model.NewPointer(false)}
	f.SetDefaults()
	return &model.License{Id: model.NewId(), StartsAt: start.UnixMilli(), ExpiresAt: end.UnixMilli(),
		Customer: &model.Customer{Name: "t"}, Features: f}
}

func TestSignVerifyAndGates(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	PublicKey = base64.StdEncoding.EncodeToString(der)
	now := time.Now()

	b, err := Sign(key, testLicense(now.Add(-time.Hour), now.Add(time.Hour), true))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Verify(b)
	if err != nil {
		t.Fatalf("valid license refused: %v", err)
	}
	if !Has(l, "cluster") || !Has(l, "elastic_search") || Has(l, "metrics") {
		t.Fatalf("features: cluster=%v es=%v metrics=%v", Has(l, "cluster"), Has(l, "elastic_search"), Has(l, "metrics"))
	}
	if m := ClientMap(l); m["IsLicensed"] != "true" || m["Cluster"] != "true" || m["Metrics"] != "false" {
		t.Fatalf("client map %v", m)
	}
	if _, ok := Sanitized(ClientMap(l))["Id"]; ok {
		t.Fatal("sanitized map keeps Id")
	}
	// trailing newline, as a file written by hand often has
	if _, err := Verify(append(b, '\n')); err != nil {
		t.Fatalf("trailing newline: %v", err)
	}

	// signed by another key
	b2, _ := Sign(other, testLicense(now.Add(-time.Hour), now.Add(time.Hour), true))
	if _, err := Verify(b2); err == nil || !strings.Contains(err.Error(), "invalid signature") {
		t.Fatalf("foreign key accepted: %v", err)
	}
	// tampered payload
	raw, _ := base64.StdEncoding.DecodeString(string(b))
	raw[10] ^= 1
	if _, err := Verify([]byte(base64.StdEncoding.EncodeToString(raw))); err == nil {
		t.Fatal("tampered license accepted")
	}
	if _, err := Verify([]byte("not base64!")); err == nil {
		t.Fatal("garbage accepted")
	}
	// expired and not yet started: verified but not active, no features
	for _, l := range []*model.License{testLicense(now.Add(-2*time.Hour), now.Add(-time.Hour), true), testLicense(now.Add(time.Hour), now.Add(2*time.Hour), true)} {
		b, _ := Sign(key, l)
		v, err := Verify(b)
		if err != nil {
			t.Fatal(err)
		}
		if Active(v) == nil || Has(v, "cluster") {
			t.Fatalf("inactive license treated as active: %+v", v)
		}
	}
	if m := ClientMap(nil); len(m) != 1 || m["IsLicensed"] != "false" {
		t.Fatalf("no license map %v", m)
	}
}
