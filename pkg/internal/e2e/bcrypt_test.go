package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"math/big"
	"sync"
	"testing"
)

// distribution's htpasswd reads only bcrypt, and the module has no bcrypt
// package: this is the algorithm (Provos and Mazières, 1999), small enough
// to keep here, checked against a known hash below. Blowfish's initial
// state is the fractional part of pi in hex, computed rather than pasted.

// bcryptHash returns "$2b$COST$..." of password with a random salt.
func bcryptHash(t testing.TB, password string, cost int) string {
	t.Helper()
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		t.Fatal(err)
	}
	return bcryptWithSalt(password, salt, cost)
}

var bcryptB64 = base64.NewEncoding("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789").WithPadding(base64.NoPadding)

func bcryptWithSalt(password string, salt []byte, cost int) string {
	key := append([]byte(password), 0)
	if len(key) > 72 {
		key = key[:72]
	}
	c := newBlowfish()
	c.expand(salt, key)
	for range 1 << cost {
		c.expand(nil, key)
		c.expand(nil, salt)
	}
	text := []byte("OrpheanBeholderScryDoubt")
	var w [6]uint32
	for i := range w {
		w[i] = binary.BigEndian.Uint32(text[4*i:])
	}
	for range 64 {
		for i := 0; i < 6; i += 2 {
			w[i], w[i+1] = c.encrypt(w[i], w[i+1])
		}
	}
	out := make([]byte, 24)
	for i := range w {
		binary.BigEndian.PutUint32(out[4*i:], w[i])
	}
	return "$2b$" + twoDigits(cost) + "$" + bcryptB64.EncodeToString(salt) + bcryptB64.EncodeToString(out[:23])
}

func twoDigits(n int) string { return string([]byte{byte('0' + n/10), byte('0' + n%10)}) }

type blowfish struct {
	p [18]uint32
	s [4][256]uint32
}

var (
	piOnce  sync.Once
	piWords [18 + 4*256]uint32
)

// piFraction fills piWords with the first 1042 32-bit words of the
// fractional part of pi: 16·atan(1/5) − 4·atan(1/239) in fixed point.
func piFraction() {
	const bits = 32 * len(piWords)
	const guard = 64
	one := new(big.Int).Lsh(big.NewInt(1), uint(bits+guard))
	atan := func(x int64) *big.Int {
		sum := new(big.Int)
		term := new(big.Int).Quo(one, big.NewInt(x))
		x2 := big.NewInt(x * x)
		q := new(big.Int)
		for k := int64(0); term.Sign() != 0; k++ {
			q.Quo(term, big.NewInt(2*k+1))
			if k%2 == 0 {
				sum.Add(sum, q)
			} else {
				sum.Sub(sum, q)
			}
			term.Quo(term, x2)
		}
		return sum
	}
	pi := new(big.Int).Mul(atan(5), big.NewInt(16))
	pi.Sub(pi, new(big.Int).Mul(atan(239), big.NewInt(4)))
	pi.Sub(pi, new(big.Int).Mul(one, big.NewInt(3)))
	pi.Rsh(pi, guard)
	b := pi.FillBytes(make([]byte, bits/8))
	for i := range piWords {
		piWords[i] = binary.BigEndian.Uint32(b[4*i:])
	}
}

func newBlowfish() *blowfish {
	piOnce.Do(piFraction)
	c := &blowfish{}
	copy(c.p[:], piWords[:18])
	for i := range c.s {
		copy(c.s[i][:], piWords[18+256*i:])
	}
	return c
}

func (c *blowfish) f(x uint32) uint32 {
	return ((c.s[0][x>>24] + c.s[1][x>>16&0xff]) ^ c.s[2][x>>8&0xff]) + c.s[3][x&0xff]
}

func (c *blowfish) encrypt(l, r uint32) (uint32, uint32) {
	for i := range 16 {
		l ^= c.p[i]
		r ^= c.f(l)
		l, r = r, l
	}
	l, r = r, l
	r ^= c.p[16]
	l ^= c.p[17]
	return l, r
}

// expand is bcrypt's ExpandKey: the key XORed into P, then P and the S-boxes
// replaced by encryptions chained through the salt (none: zeros).
func (c *blowfish) expand(salt, key []byte) {
	j := 0
	for i := range c.p {
		c.p[i] ^= cyclicWord(key, &j)
	}
	j = 0
	var l, r uint32
	next := func() {
		if salt != nil {
			l ^= cyclicWord(salt, &j)
			r ^= cyclicWord(salt, &j)
		}
		l, r = c.encrypt(l, r)
	}
	for i := 0; i < len(c.p); i += 2 {
		next()
		c.p[i], c.p[i+1] = l, r
	}
	for s := range c.s {
		for i := 0; i < 256; i += 2 {
			next()
			c.s[s][i], c.s[s][i+1] = l, r
		}
	}
}

func cyclicWord(b []byte, j *int) uint32 {
	var w uint32
	for range 4 {
		w = w<<8 | uint32(b[*j])
		*j = (*j + 1) % len(b)
	}
	return w
}

func TestBcrypt(t *testing.T) {
	piOnce.Do(piFraction)
	if piWords[0] != 0x243f6a88 || piWords[17] != 0x8979fb1b || piWords[18] != 0xd1310ba6 || piWords[len(piWords)-1] != 0x3ac372e6 {
		t.Fatalf("pi words: %08x %08x %08x … %08x", piWords[0], piWords[17], piWords[18], piWords[len(piWords)-1])
	}
	// The hash pkg/internal/testutil's tests use, made by htpasswd -B.
	const want = "$2b$04$3/OwKHdGVC.H2Sady4P6n.rFozSQWb4JrtqL6GsCBScmMFAS7000C"
	salt, err := bcryptB64.DecodeString(want[7:29])
	if err != nil {
		t.Fatal(err)
	}
	if got := bcryptWithSalt("ferry-pass", salt, 4); got != want {
		t.Errorf("bcrypt(ferry-pass) = %s, want %s", got, want)
	}
}
