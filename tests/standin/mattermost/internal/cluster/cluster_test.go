package cluster

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"mmdeploy.test/standin/mattermost/internal/store"
)

// memDiscovery is an in-memory ClusterDiscovery table with the store's semantics.
type memDiscovery struct {
	mu   sync.Mutex
	rows []*store.Discovery
}

func (m *memDiscovery) SaveDiscovery(d *store.Discovery) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rows {
		if r.Type == d.Type && r.ClusterName == d.ClusterName && r.Hostname == d.Hostname && r.GossipPort == d.GossipPort {
			r.LastPingAt = model.GetMillis()
			return nil
		}
	}
	c := *d
	m.rows = append(m.rows, &c)
	return nil
}

func (m *memDiscovery) ListDiscovery(typ, name string, since int64) ([]*store.Discovery, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*store.Discovery
	for _, r := range m.rows {
		if r.Type == typ && r.ClusterName == name && r.LastPingAt > since {
			c := *r
			out = append(out, &c)
		}
	}
	return out, nil
}

func (m *memDiscovery) CleanupDiscovery(typ, name string, before int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keep []*store.Discovery
	for _, r := range m.rows {
		if !(r.Type == typ && r.ClusterName == name && r.LastPingAt < before) {
			keep = append(keep, r)
		}
	}
	m.rows = keep
	return nil
}

func (m *memDiscovery) DeleteDiscovery(d *store.Discovery) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keep []*store.Discovery
	for _, r := range m.rows {
		if !(r.Type == d.Type && r.ClusterName == d.ClusterName && r.Hostname == d.Hostname && r.GossipPort == d.GossipPort) {
			keep = append(keep, r)
		}
	}
	m.rows = keep
	return nil
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func node(t *testing.T, d Discovery, name, hash string, key []byte) (*Cluster, chan string) {
	id := model.NewId()
	got := make(chan string, 10)
	c, err := Start(Options{NodeID: id, ClusterName: name, GossipPort: freePort(t), BindAddress: "127.0.0.1",
		AdvertiseAddress: "127.0.0.1", OverrideHostname: "127.0.0.1", SecretKey: key, Store: d,
		Info: func() model.ClusterInfo {
			return model.ClusterInfo{Id: id, Version: "11.1.0", SchemaVersion: "11.1.0", ConfigHash: hash, IPAddress: "127.0.0.1", Hostname: "h-" + id[:4]}
		},
		Log: func(level, msg string, kv ...any) { t.Log(level, msg, kv) }, DiscoveryEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.RegisterHandler(model.ClusterEventPublish, func(m *model.ClusterMessage) { got <- string(m.Data) })
	t.Cleanup(c.Stop)
	return c, got
}

func waitMembers(t *testing.T, c *Cluster, n int) {
	deadline := time.Now().Add(10 * time.Second)
	for c.Members() != n {
		if time.Now().After(deadline) {
			t.Fatalf("members = %d, want %d", c.Members(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDiscoveryGossipAndFanOut(t *testing.T) {
	d := &memDiscovery{}
	key := []byte("0123456789abcdef")
	a1, got1 := node(t, d, "alpha", "h1", key)
	a2, got2 := node(t, d, "alpha", "h2", key)
	b1, gotB := node(t, d, "beta", "h1", key)
	waitMembers(t, a1, 2)
	waitMembers(t, a2, 2)

	// A node of another cluster that tries to join alpha directly is refused.
	if _, err := b1.ml.Join([]string{a1.ml.LocalNode().Address()}); err == nil {
		time.Sleep(500 * time.Millisecond)
	}
	if a1.Members() != 2 || b1.Members() != 1 {
		t.Fatalf("cross-cluster join: alpha has %d members, beta %d", a1.Members(), b1.Members())
	}

	for _, st := range []string{model.ClusterSendReliable, model.ClusterSendBestEffort} {
		a1.Send(&model.ClusterMessage{Event: model.ClusterEventPublish, SendType: st, Data: []byte(`{"event":"posted","seq":` + `1}`)})
		select {
		case m := <-got2:
			if m != `{"event":"posted","seq":1}` {
				t.Fatalf("got %q", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s message did not reach the other node", st)
		}
	}
	select {
	case m := <-gotB:
		t.Fatalf("beta received alpha's message %q", m)
	case m := <-got1:
		t.Fatalf("sender received its own message %q", m)
	case <-time.After(300 * time.Millisecond):
	}

	infos := a1.Infos()
	if len(infos) != 2 || infos[0].ConfigHash == infos[1].ConfigHash {
		t.Fatalf("infos %+v", infos)
	}
	// A stopped node leaves the cluster and its discovery row goes.
	a2.Stop()
	waitMembers(t, a1, 1)
	rows, _ := d.ListDiscovery(model.CDSTypeApp, "alpha", 0)
	if len(rows) != 1 {
		t.Fatalf("discovery rows after stop: %d", len(rows))
	}
}

func TestDifferentEncryptionKeysDoNotGossip(t *testing.T) {
	d := &memDiscovery{}
	a1, _ := node(t, d, "alpha", "h", []byte("0123456789abcdef"))
	a2, _ := node(t, d, "alpha", "h", []byte("fedcba9876543210"))
	time.Sleep(time.Second)
	if a1.Members() != 1 || a2.Members() != 1 {
		t.Fatalf("nodes with different gossip keys formed a cluster: %d %d", a1.Members(), a2.Members())
	}
}
