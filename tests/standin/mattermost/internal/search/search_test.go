package search

import (
	"encoding/json"
	"testing"
	"time"
)

func TestPostIndexNameIsDailyWithPrefix(t *testing.T) {
	at := time.Date(2026, 3, 7, 15, 4, 5, 0, time.Local).UnixMilli()
	if got := PostIndexName("mm_", at); got != "mm_posts_2026_03_07" {
		t.Fatalf("got %s", got)
	}
	if got := PostIndexName("", at); got != "posts_2026_03_07" {
		t.Fatalf("got %s", got)
	}
}

func TestQueryRequiresEveryTermWithinChannels(t *testing.T) {
	b, _ := json.Marshal(Query([]string{"alpha", "beta"}, []string{"c1", "c2"}, 20))
	want := `{"_source":false,"query":{"bool":{"filter":[{"terms":{"channel_id":["c1","c2"]}}],"must":[{"match":{"message":{"operator":"and","query":"alpha"}}},{"match":{"message":{"operator":"and","query":"beta"}}}]}},"size":20,"sort":[{"create_at":{"order":"desc"}}]}`
	if string(b) != want {
		t.Fatalf("query\n got %s\nwant %s", b, want)
	}
}

func TestTermsDropModifiersAndQuotes(t *testing.T) {
	got := Terms(`"Hello" world* in:town-square  from:bob`)
	if len(got) != 2 || got[0] != "hello" || got[1] != "world" {
		t.Fatalf("got %v", got)
	}
}
