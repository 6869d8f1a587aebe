package server

import (
	"reflect"
	"testing"

	"mmdeploy.test/standin/mattermost/internal/config"
)

func cfg(t *testing.T, js string) *config.Config {
	c, err := config.Parse([]byte(js), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigHashFollowsTheEffectiveConfigButNotPerNodeAddresses(t *testing.T) {
	base := ConfigHash(cfg(t, `{"ClusterSettings":{"Enable":true,"ClusterName":"a","AdvertiseAddress":"10.0.0.1"}}`))
	if h := ConfigHash(cfg(t, `{"ClusterSettings":{"Enable":true,"ClusterName":"a","AdvertiseAddress":"10.0.0.2","OverrideHostname":"n2"}}`)); h != base {
		t.Fatalf("per-node addresses changed the hash: %s vs %s", h, base)
	}
	// each node listens on its own private address
	if h := ConfigHash(cfg(t, `{"ServiceSettings":{"ListenAddress":"10.0.0.2:8065"},"MetricsSettings":{"ListenAddress":"10.0.0.2:8067"},"ClusterSettings":{"Enable":true,"ClusterName":"a"}}`)); h != base {
		t.Fatalf("listen addresses changed the hash: %s vs %s", h, base)
	}
	if h := ConfigHash(cfg(t, `{"ClusterSettings":{"Enable":true,"ClusterName":"b","AdvertiseAddress":"10.0.0.1"}}`)); h == base {
		t.Fatal("another ClusterName gave the same hash")
	}
	// defaults count: an explicit default is the same effective config
	if h := ConfigHash(cfg(t, `{"ClusterSettings":{"Enable":true,"ClusterName":"a","GossipPort":8074}}`)); h != base {
		t.Fatalf("explicit default changed the hash")
	}
	c := cfg(t, `{"ClusterSettings":{"Enable":true,"ClusterName":"a"}}`)
	if *c.ClusterSettings.AdvertiseAddress != "" || *c.ServiceSettings.ListenAddress != ":8065" || len(ConfigHash(c)) != 32 {
		t.Fatal("ConfigHash must not modify the config and must be an md5 hex")
	}
}

func TestMentions(t *testing.T) {
	got := Mentions("hi @Bob and @alice.smith, also @bob. mail a@b")
	if !reflect.DeepEqual(got, []string{"bob", "alice.smith", "b"}) {
		t.Fatalf("got %v", got)
	}
}
