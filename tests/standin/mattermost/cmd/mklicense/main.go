// TEST STAND-IN tool (not part of the real Mattermost release): writes a TEST
// license file for the stand-in server, in the real license file format
// (base64 of the model.License JSON + RSA-2048 PKCS#1 v1.5 SHA-512 signature),
// signed with the project's test key (a PEM private key made by build.sh with
// openssl and kept out of git). Only a stand-in built with that key's public
// half accepts it; the real Mattermost server refuses it.
//
// Usage:
//
//	mklicense -key KEY.pem -out FILE [-features cluster,elastic_search,...|all|none]
//	          [-days N] [-starts-in-days N] [-users N] [-sku enterprise]
package main

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"mmdeploy.test/standin/mattermost/internal/license"
)

func main() {
	keyPath := flag.String("key", "", "PEM private key (PKCS#8 or PKCS#1) of the test signing key")
	out := flag.String("out", "", "license file to write")
	features := flag.String("features", "all", "comma-separated features (cluster, elastic_search, metrics, mhpns, ...), all or none")
	days := flag.Int("days", 365, "days until expiry (negative: already expired)")
	startsIn := flag.Int("starts-in-days", -1, "days until the license starts (negative: started)")
	users := flag.Int("users", 10000, "licensed users")
	sku := flag.String("sku", "enterprise", "sku_short_name")
	flag.Parse()
	if *keyPath == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	key, err := readKey(*keyPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mklicense:", err)
		os.Exit(1)
	}
	now := time.Now()
	l := &model.License{
		Id:           model.NewId(),
		IssuedAt:     now.UnixMilli(),
		StartsAt:     now.AddDate(0, 0, *startsIn).UnixMilli(),
		ExpiresAt:    now.AddDate(0, 0, *days).UnixMilli(),
		Customer:     &model.Customer{Id: model.NewId(), Name: "mmdeploy test", Email: "test@example.com", Company: "mmdeploy stand-in"},
		SkuName:      "Enterprise (stand-in TEST license)",
		SkuShortName: *sku,
		Features:     featuresFrom(*features, *users),
	}
	b, err := license.Sign(key, l)
	if err == nil {
		err = os.WriteFile(*out, b, 0o600)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mklicense:", err)
		os.Exit(1)
	}
	fmt.Println(l.Id)
}

func featuresFrom(spec string, users int) *model.Features {
	all := spec == "all"
	f := &model.Features{Users: &users, FutureFeatures: model.NewPointer(all)}
	on := map[string]bool{}
	for _, s := range strings.Split(spec, ",") {
		on[strings.TrimSpace(s)] = true
	}
	set := func(name string, p **bool) {
		*p = model.NewPointer(all || on[name])
	}
	set("cluster", &f.Cluster)
	set("elastic_search", &f.Elasticsearch)
	set("metrics", &f.Metrics)
	set("mhpns", &f.MHPNS)
	set("id_loaded", &f.IDLoadedPushNotifications)
	set("ldap", &f.LDAP)
	set("saml", &f.SAML)
	set("compliance", &f.Compliance)
	set("data_retention", &f.DataRetention)
	set("message_export", &f.MessageExport)
	f.SetDefaults()
	return f
}

func readKey(path string) (*rsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if rk, ok := k.(*rsa.PrivateKey); ok {
			return rk, nil
		}
		return nil, fmt.Errorf("%s: not an RSA key", path)
	}
	return x509.ParsePKCS1PrivateKey(block.Bytes)
}
