package mmid

import "testing"

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := New()
		if !Valid(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	if Valid("short") || Valid("ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		t.Error("Valid accepts bad ids")
	}
}
