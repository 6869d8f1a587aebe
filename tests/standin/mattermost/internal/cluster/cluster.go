// TEST STAND-IN for the real Mattermost server's high-availability cluster
// (an Enterprise feature; the server is AGPL and its Enterprise cluster code
// is not public). Reproduced boundaries: ClusterSettings (Enable,
// ClusterName, GossipPort default 8074, AdvertiseAddress, OverrideHostname,
// UseIPAddress, EnableGossipEncryption with the key kept in the Systems table
// row ClusterEncryptionKey, EnableGossipCompression); discovery through the
// database's ClusterDiscovery table (Type model.CDSTypeApp "mattermost_app",
// one row per node, pinged periodically, rows older than
// model.CDSOfflineAfterMillis ignored and removed, the node's row deleted on
// shutdown); gossip over TCP+UDP on GossipPort with hashicorp/memberlist, as the
// real server does, only between nodes of the same ClusterName (the name is the
// memberlist label and is checked again on every alive and merge); cluster
// messages (model.ClusterMessage, e.g. event "publish" carrying a websocket
// event) fanned out to every other node; model.ClusterInfo of every live node
// (carried in each node's memberlist metadata). Divergence: the real cluster's
// wire format and its request/response messages are not reproduced.
package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/mattermost/mattermost/server/public/model"

	"mmdeploy.test/standin/mattermost/internal/store"
)

// Logf is the server's logger.
type Logf func(level, msg string, kv ...any)

// Discovery is the part of the store the cluster uses.
type Discovery interface {
	SaveDiscovery(d *store.Discovery) error
	ListDiscovery(typ, clusterName string, since int64) ([]*store.Discovery, error)
	CleanupDiscovery(typ, clusterName string, before int64) error
	DeleteDiscovery(d *store.Discovery) error
}

// Options configure a node.
type Options struct {
	NodeID           string
	ClusterName      string
	GossipPort       int
	BindAddress      string // default: all interfaces, as the real server
	AdvertiseAddress string
	OverrideHostname string
	UseIPAddress     bool
	SecretKey        []byte // nil: no gossip encryption
	Compression      bool
	Info             func() model.ClusterInfo
	Store            Discovery
	Log              Logf
	DiscoveryEvery   time.Duration
}

// Cluster is one running node.
type Cluster struct {
	opt      Options
	ml       *memberlist.Memberlist
	row      *store.Discovery
	mu       sync.RWMutex
	handlers map[model.ClusterEvent]func(*model.ClusterMessage)
	meta     []byte
	stop     chan struct{}
	stopOnce sync.Once
	done     sync.WaitGroup
	Sent     int64
	Received int64
	queues   map[string]chan outbound // per other node, see Send
}

type nodeMeta struct {
	ClusterName string            `json:"cluster_name"`
	Info        model.ClusterInfo `json:"info"`
}

// Start joins the cluster: it binds the gossip port, registers the node in
// ClusterDiscovery and joins the live nodes found there.
func Start(opt Options) (*Cluster, error) {
	if opt.ClusterName == "" {
		return nil, errors.New("ClusterSettings.ClusterName is empty")
	}
	if opt.GossipPort == 0 {
		opt.GossipPort = 8074
	}
	if opt.DiscoveryEvery == 0 {
		opt.DiscoveryEvery = 10 * time.Second
	}
	host, advIP, err := advertise(opt)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opt: opt, handlers: map[model.ClusterEvent]func(*model.ClusterMessage){}, stop: make(chan struct{})}
	c.refreshMeta()
	cfg := memberlist.DefaultLANConfig()
	cfg.Name = opt.NodeID
	cfg.BindAddr = opt.BindAddress
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	cfg.BindPort = opt.GossipPort
	cfg.AdvertiseAddr = advIP
	cfg.AdvertisePort = opt.GossipPort
	cfg.Label = opt.ClusterName
	cfg.SecretKey = opt.SecretKey
	cfg.EnableCompression = opt.Compression
	cfg.Delegate = c
	cfg.Events = c
	cfg.Alive = c
	cfg.Merge = c
	cfg.LogOutput = &logWriter{log: opt.Log}
	ml, err := memberlist.Create(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting gossip on port %d: %w", opt.GossipPort, err)
	}
	c.ml = ml
	now := model.GetMillis()
	c.row = &store.Discovery{Id: model.NewId(), Type: model.CDSTypeApp, ClusterName: opt.ClusterName, Hostname: host,
		GossipPort: opt.GossipPort, CreateAt: now, LastPingAt: now}
	c.discover()
	c.done.Add(1)
	go c.loop()
	opt.Log("info", "Cluster is running", "cluster_name", opt.ClusterName, "node_id", opt.NodeID,
		"hostname", host, "advertise_address", advIP, "gossip_port", opt.GossipPort, "encryption", opt.SecretKey != nil)
	return c, nil
}

// advertise returns the hostname written to ClusterDiscovery and the IP
// memberlist advertises, following OverrideHostname / UseIPAddress /
// AdvertiseAddress as the real server does.
func advertise(opt Options) (string, string, error) {
	host := opt.OverrideHostname
	if host == "" {
		if opt.UseIPAddress {
			host = opt.AdvertiseAddress
			if host == "" {
				host = firstIP()
			}
		} else {
			host, _ = os.Hostname()
		}
	}
	ip := opt.AdvertiseAddress
	if ip == "" {
		ip = host
	}
	if net.ParseIP(ip) == nil {
		addrs, err := net.LookupIP(ip)
		if err != nil || len(addrs) == 0 {
			ip = firstIP()
		} else {
			ip = addrs[0].String()
		}
	}
	if ip == "" {
		return "", "", errors.New("no address to advertise: set ClusterSettings.AdvertiseAddress")
	}
	return host, ip, nil
}

func firstIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

func (c *Cluster) loop() {
	defer c.done.Done()
	t := time.NewTicker(c.opt.DiscoveryEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.discover()
			c.refreshMeta()
			c.ml.UpdateNode(5 * time.Second)
		}
	}
}

// discover pings the node's row and joins live nodes of the cluster it does not know yet.
func (c *Cluster) discover() {
	if err := c.opt.Store.SaveDiscovery(c.row); err != nil {
		c.opt.Log("error", "Cluster discovery: cannot save this node's row", "error", err.Error())
		return
	}
	now := model.GetMillis()
	c.opt.Store.CleanupDiscovery(model.CDSTypeApp, c.opt.ClusterName, now-model.CDSOfflineAfterMillis)
	rows, err := c.opt.Store.ListDiscovery(model.CDSTypeApp, c.opt.ClusterName, now-model.CDSOfflineAfterMillis)
	if err != nil {
		c.opt.Log("error", "Cluster discovery: cannot read ClusterDiscovery", "error", err.Error())
		return
	}
	known := map[string]bool{}
	for _, m := range c.ml.Members() {
		known[net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))] = true
	}
	var join []string
	for _, r := range rows {
		if r.Hostname == c.row.Hostname && r.GossipPort == c.row.GossipPort {
			continue
		}
		addr := net.JoinHostPort(r.Hostname, strconv.Itoa(r.GossipPort))
		if ips, err := net.LookupIP(r.Hostname); err == nil && len(ips) > 0 {
			if known[net.JoinHostPort(ips[0].String(), strconv.Itoa(r.GossipPort))] {
				continue
			}
		}
		join = append(join, addr)
	}
	if len(join) == 0 {
		return
	}
	n, err := c.ml.Join(join)
	if err != nil && n == 0 {
		c.opt.Log("warn", "Cluster discovery: could not join nodes", "nodes", strings.Join(join, ","), "error", err.Error())
	} else if n > 0 {
		c.opt.Log("info", "Cluster discovery: joined nodes", "count", n)
	}
}

// RegisterHandler sets the handler for a cluster event.
func (c *Cluster) RegisterHandler(ev model.ClusterEvent, h func(*model.ClusterMessage)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers[ev] = h
}

// Send fans a message out to every other live node.
func (c *Cluster) Send(msg *model.ClusterMessage) {
	b, err := json.Marshal(msg)
	if err != nil {
		return
	}
	out := outbound{data: b, event: string(msg.Event), reliable: !(msg.SendType == model.ClusterSendBestEffort && len(b) < 1000)}
	// Queued per node and sent by that node's sender, as the real server does: a request
	// never waits on the cluster, and a node that died (not yet noticed by gossip) only
	// delays its own messages, by the send's time limit.
	for _, m := range c.ml.Members() {
		if m.Name == c.opt.NodeID {
			continue
		}
		select {
		case c.queueFor(m.Name) <- out:
		default:
			c.opt.Log("warn", "Cluster: send queue full, message dropped", "event", out.event, "node", m.Name)
		}
	}
}

// outbound is one message on a node's send queue.
type outbound struct {
	data     []byte
	event    string
	reliable bool // TCP, else UDP (best effort and small)
}

const sendQueueSize = 4096

func (c *Cluster) queueFor(name string) chan outbound {
	c.mu.Lock()
	defer c.mu.Unlock()
	if q, ok := c.queues[name]; ok {
		return q
	}
	if c.queues == nil {
		c.queues = map[string]chan outbound{}
	}
	q := make(chan outbound, sendQueueSize)
	c.queues[name] = q
	c.done.Add(1)
	go c.sender(name, q)
	return q
}

// sender sends one node's queue in order until the cluster stops; a node that left is
// skipped (its messages dropped, as the real server's).
func (c *Cluster) sender(name string, q chan outbound) {
	defer c.done.Done()
	for {
		select {
		case <-c.stop:
			return
		case out := <-q:
			var node *memberlist.Node
			for _, m := range c.ml.Members() {
				if m.Name == name {
					node = m
				}
			}
			if node == nil {
				continue
			}
			var err error
			if out.reliable {
				err = c.ml.SendReliable(node, out.data) // TCP
			} else {
				err = c.ml.SendBestEffort(node, out.data) // UDP
			}
			if err != nil {
				c.opt.Log("warn", "Cluster: failed to send a message", "event", out.event, "node", name, "error", err.Error())
				continue
			}
			c.mu.Lock()
			c.Sent++
			c.mu.Unlock()
		}
	}
}

// Infos returns model.ClusterInfo for every live node, this one included.
func (c *Cluster) Infos() []model.ClusterInfo {
	c.refreshMeta()
	var out []model.ClusterInfo
	for _, m := range c.ml.Members() {
		var nm nodeMeta
		if m.Name == c.opt.NodeID {
			nm.Info = c.opt.Info()
		} else if json.Unmarshal(m.Meta, &nm) != nil || nm.ClusterName != c.opt.ClusterName {
			continue
		}
		out = append(out, nm.Info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname+out[i].Id < out[j].Hostname+out[j].Id })
	return out
}

// Members is the number of live nodes, this one included.
func (c *Cluster) Members() int { return c.ml.NumMembers() }

// Stop leaves the cluster and removes the node's discovery row.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		close(c.stop)
		c.done.Wait()
		c.ml.Leave(2 * time.Second)
		c.ml.Shutdown()
		c.opt.Store.DeleteDiscovery(c.row)
	})
}

func (c *Cluster) refreshMeta() {
	b, _ := json.Marshal(nodeMeta{ClusterName: c.opt.ClusterName, Info: c.opt.Info()})
	c.mu.Lock()
	c.meta = b
	c.mu.Unlock()
}

// ---- memberlist delegates ----

func (c *Cluster) NodeMeta(limit int) []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.meta) > limit {
		return nil
	}
	return c.meta
}

func (c *Cluster) NotifyMsg(b []byte) {
	var msg model.ClusterMessage
	if err := json.Unmarshal(b, &msg); err != nil {
		return
	}
	c.mu.Lock()
	c.Received++
	h := c.handlers[msg.Event]
	c.mu.Unlock()
	if h != nil {
		h(&msg)
	}
}

func (c *Cluster) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (c *Cluster) LocalState(join bool) []byte                { return nil }
func (c *Cluster) MergeRemoteState(buf []byte, join bool)     {}

func (c *Cluster) NotifyJoin(n *memberlist.Node) {
	if n.Name != c.opt.NodeID {
		c.opt.Log("info", "Cluster: node joined", "node", n.Name, "address", n.Address())
	}
}
func (c *Cluster) NotifyLeave(n *memberlist.Node) {
	c.opt.Log("info", "Cluster: node left", "node", n.Name, "address", n.Address())
}
func (c *Cluster) NotifyUpdate(n *memberlist.Node) {}

// NotifyAlive refuses a peer of another cluster.
func (c *Cluster) NotifyAlive(n *memberlist.Node) error {
	return c.sameCluster(n)
}

// NotifyMerge refuses to merge with another cluster's members.
func (c *Cluster) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if err := c.sameCluster(n); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) sameCluster(n *memberlist.Node) error {
	if n.Name == c.opt.NodeID {
		return nil
	}
	var nm nodeMeta
	if err := json.Unmarshal(n.Meta, &nm); err != nil || nm.ClusterName != c.opt.ClusterName {
		return fmt.Errorf("node %s is not in cluster %q", n.Name, c.opt.ClusterName)
	}
	return nil
}

// logWriter sends memberlist's warnings and errors to the server log.
type logWriter struct{ log Logf }

func (w *logWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		s := string(line)
		switch {
		case strings.Contains(s, "[ERR]"):
			w.log("error", "memberlist: "+s[strings.Index(s, "[ERR]")+6:])
		case strings.Contains(s, "[WARN]"):
			w.log("warn", "memberlist: "+s[strings.Index(s, "[WARN]")+7:])
		}
	}
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)
