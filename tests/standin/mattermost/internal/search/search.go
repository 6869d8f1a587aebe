// TEST STAND-IN for the real Mattermost server's Elasticsearch/OpenSearch
// engine (an Enterprise feature; AGPL/source-available code not built here).
// Reproduced boundaries: ElasticsearchSettings (ConnectionURL, Backend
// "elasticsearch"/"opensearch", Username, Password, EnableIndexing,
// EnableSearching, IndexPrefix, SkipTLSVerification, RequestTimeoutSeconds,
// Sniff), active only with a license granting elastic_search; posts indexed
// into daily indexes named like the real server's (IndexPrefix + "posts_" +
// YYYY_MM_DD of the post's create_at); post search over IndexPrefix+"posts_*"
// restricted to the searcher's channels, every term required; the bulk
// indexing job. Talks to the engine with opensearch-go for both backends.
// Divergences: no monthly aggregated indexes, no channel/user/file indexes, a
// simpler mapping and query than the real ones.
package search

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/opensearch-project/opensearch-go/v4/opensearchapi"

	"mmdeploy.test/standin/mattermost/internal/config"
	"mmdeploy.test/standin/mattermost/internal/store"
)

// Engine is a connection to the search cluster.
type Engine struct {
	Backend   string
	prefix    string
	Indexing  bool
	Searching bool
	cl        *opensearchapi.Client
	timeout   time.Duration
}

// New connects (without contacting the server) to ElasticsearchSettings.ConnectionURL.
func New(cfg *config.Config) (*Engine, error) {
	es := &cfg.ElasticsearchSettings
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if *es.SkipTLSVerification {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	disc := false // Sniff would discover nodes by their published addresses; the stand-in talks to ConnectionURL only
	cl, err := opensearchapi.NewClient(opensearchapi.Config{Client: opensearch.Config{
		Addresses: []string{*es.ConnectionURL}, Username: *es.Username, Password: *es.Password,
		Transport: tr, DiscoverNodesOnStart: &disc}})
	if err != nil {
		return nil, err
	}
	return &Engine{Backend: *es.Backend, prefix: *es.IndexPrefix, Indexing: *es.EnableIndexing, Searching: *es.EnableSearching,
		cl: cl, timeout: time.Duration(*es.RequestTimeoutSeconds) * time.Second}, nil
}

// PostIndexName is the real server's daily post index name.
func PostIndexName(prefix string, createAt int64) string {
	t := time.UnixMilli(createAt)
	return fmt.Sprintf("%sposts_%d_%02d_%02d", prefix, t.Year(), t.Month(), t.Day())
}

// Check asks the engine for its version (the real server does this on start).
func (e *Engine) Check(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	info, err := e.cl.Info(ctx, nil)
	if err != nil {
		return "", err
	}
	return info.Version.Number, nil
}

// esPost is the indexed document (a subset of the real ESPost).
type esPost struct {
	Id        string   `json:"id"`
	TeamId    string   `json:"team_id"`
	ChannelId string   `json:"channel_id"`
	UserId    string   `json:"user_id"`
	CreateAt  int64    `json:"create_at"`
	Message   string   `json:"message"`
	Type      string   `json:"type"`
	Hashtags  []string `json:"hashtags"`
}

// IndexPost writes one post document. Like the real server it does not ask for a refresh:
// the post becomes searchable at the index's next refresh (every second by default), so
// a busy channel does not cost the cluster a refresh per post.
func (e *Engine) IndexPost(ctx context.Context, p *store.Post, teamID string) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	doc, _ := json.Marshal(esPost{Id: p.Id, TeamId: teamID, ChannelId: p.ChannelId, UserId: p.UserId, CreateAt: p.CreateAt,
		Message: p.Message, Type: p.Type, Hashtags: strings.Fields(p.Hashtags)})
	_, err := e.cl.Index(ctx, opensearchapi.IndexReq{Index: PostIndexName(e.prefix, p.CreateAt), DocumentID: p.Id,
		Body: bytes.NewReader(doc)})
	return err
}

// Refresh makes every post indexed so far searchable (once, at the end of a bulk job).
func (e *Engine) Refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	ignore := true
	_, err := e.cl.Indices.Refresh(ctx, &opensearchapi.IndicesRefreshReq{Index: []string{e.prefix + "posts_*"},
		Params: opensearchapi.IndicesRefreshParams{IgnoreUnavailable: &ignore}})
	return err
}

// Query builds the search body: every term in message, within the channels, newest first.
func Query(terms, channelIDs []string, limit int) map[string]any {
	must := []any{}
	for _, t := range terms {
		must = append(must, map[string]any{"match": map[string]any{"message": map[string]any{"query": t, "operator": "and"}}})
	}
	return map[string]any{
		"size": limit,
		"sort": []any{map[string]any{"create_at": map[string]any{"order": "desc"}}},
		"query": map[string]any{"bool": map[string]any{
			"must":   must,
			"filter": []any{map[string]any{"terms": map[string]any{"channel_id": channelIDs}}},
		}},
		"_source": false,
	}
}

// SearchPosts returns the ids of matching posts.
func (e *Engine) SearchPosts(ctx context.Context, terms, channelIDs []string, limit int) ([]string, error) {
	if len(terms) == 0 || len(channelIDs) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	body, _ := json.Marshal(Query(terms, channelIDs, limit))
	ignore := true
	resp, err := e.cl.Search(ctx, &opensearchapi.SearchReq{Indices: []string{e.prefix + "posts_*"}, Body: bytes.NewReader(body),
		Params: opensearchapi.SearchParams{IgnoreUnavailable: &ignore}})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(resp.Hits.Hits))
	for _, h := range resp.Hits.Hits {
		ids = append(ids, h.ID)
	}
	return ids, nil
}

// Terms splits a search string into terms (quotes and simple modifiers dropped).
func Terms(q string) []string {
	var out []string
	for _, f := range strings.Fields(q) {
		f = strings.Trim(f, `"*`)
		if f == "" || strings.Contains(f, ":") {
			continue // in:, from:, on: ... modifiers are not reproduced
		}
		out = append(out, strings.ToLower(f))
	}
	return out
}
