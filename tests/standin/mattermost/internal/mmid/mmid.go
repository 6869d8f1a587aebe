// TEST STAND-IN helper: Mattermost-style 26-character ids (a random 128-bit
// value in Mattermost's base32 alphabet), so ids look and validate like the
// real server's (model.NewId / model.IsValidId).
package mmid

import (
	"crypto/rand"
	"encoding/base32"
)

var encoding = base32.NewEncoding("ybndrfg8ejkmcpqxot1uwisza345h769").WithPadding(base32.NoPadding)

// New returns a new 26-character id.
func New() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return encoding.EncodeToString(b[:])
}

// Valid tells whether s looks like a Mattermost id.
func Valid(s string) bool {
	if len(s) != 26 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
