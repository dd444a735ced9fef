package app

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"strings"
)

// Token prefixes say what a bearer token is for when one turns up in a log or a paste.
const (
	PrefixAPIToken          = "hth_"
	PrefixRegistrationToken = "hrg_"
	PrefixSession           = "hss_"
	PrefixAgentToken        = "hag_"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewToken returns a fresh random token (256 bits) with the given prefix, and its hash. Only
// the hash is ever stored; the token is shown once.
func NewToken(prefix string) (token, hash string) {
	b := make([]byte, 32)
	rand.Read(b) // crypto/rand.Read never fails; it panics on a broken system source
	token = prefix + strings.ToLower(b32.EncodeToString(b))
	return token, HashToken(token)
}

// HashToken returns the hex SHA-256 of a token. Tokens carry 256 random bits, so a fast
// unsalted hash is enough: there is nothing to brute-force, unlike passwords.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewID returns a random VM id: 16 lowercase base32 characters (80 bits), safe in paths,
// hostnames and cloud-init instance ids.
func NewID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return strings.ToLower(b32.EncodeToString(b))
}
