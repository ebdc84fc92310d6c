package auth

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// cheapArgon2 keeps tests fast; the format and the code path are the same
// as with DefaultArgon2.
var cheapArgon2 = Argon2Params{Memory: 64, Time: 1, Threads: 1}

func mustHash(t testing.TB, password string, p Argon2Params) string {
	t.Helper()
	h, err := HashPassword(password, p)
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	return h
}

func mustBcrypt(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatalf("bcrypt: %v", err)
	}
	return string(h)
}

func TestHashPasswordRoundTrip(t *testing.T) {
	t.Parallel()
	for _, pw := range []string{"correct horse battery staple", "", "pässwörd 🙂", strings.Repeat("x", 1024)} {
		h := mustHash(t, pw, cheapArgon2)
		ok, err := CheckPassword(h, pw)
		if err != nil || !ok {
			t.Errorf("CheckPassword(HashPassword(%.20q)) = %v, %v; want true, nil", pw, ok, err)
		}
		ok, err = CheckPassword(h, pw+"x")
		if err != nil || ok {
			t.Errorf("CheckPassword with a wrong password = %v, %v; want false, nil", ok, err)
		}
	}
}

func TestHashPasswordFormat(t *testing.T) {
	t.Parallel()
	h := mustHash(t, "secret", DefaultArgon2)
	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(h) {
		t.Fatalf("HashPassword = %q, want a PHC argon2id string with the default parameters", h)
	}
	if ok, err := CheckPassword(h, "secret"); !ok || err != nil {
		t.Fatalf("CheckPassword(default hash) = %v, %v", ok, err)
	}
	// Every hash has its own salt.
	if h2 := mustHash(t, "secret", DefaultArgon2); h2 == h {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
}

func TestCheckPasswordBcrypt(t *testing.T) {
	t.Parallel()
	h := mustBcrypt(t, "hunter2")
	if !strings.HasPrefix(h, "$2a$") {
		t.Fatalf("unexpected bcrypt prefix: %q", h)
	}
	// Hashes from other implementations use $2b$ and $2y$.
	for _, variant := range []string{h, "$2b$" + h[4:], "$2y$" + h[4:]} {
		if ok, err := CheckPassword(variant, "hunter2"); !ok || err != nil {
			t.Errorf("CheckPassword(%s…, right) = %v, %v; want true, nil", variant[:7], ok, err)
		}
		if ok, err := CheckPassword(variant, "hunter3"); ok || err != nil {
			t.Errorf("CheckPassword(%s…, wrong) = %v, %v; want false, nil", variant[:7], ok, err)
		}
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	t.Parallel()
	good := mustHash(t, "pw", cheapArgon2)
	parts := strings.Split(good, "$") // "", argon2id, v=19, params, salt, key
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	bc := mustBcrypt(t, "pw")
	tests := []struct{ name, hash string }{
		{"empty", ""},
		{"plain text", "pw"},
		{"unknown scheme", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"},
		{"md5 crypt", "$1$saltsalt$qjXMvOEHBPgHHDjFSOCPV/"},
		{"argon2 prefix only", "$argon2id$"},
		{"argon2 missing key", strings.Join(parts[:5], "$")},
		{"argon2 extra part", good + "$x"},
		{"argon2 wrong version", with(2, "v=16")},
		{"argon2 no version", with(2, "19")},
		{"argon2 params garbage", with(3, "m=a,t=b,p=c")},
		{"argon2 memory too small", with(3, "m=4,t=1,p=1")},
		{"argon2 memory too large", with(3, "m=99999999,t=1,p=1")},
		{"argon2 memory overflows", with(3, "m=99999999999,t=1,p=1")},
		{"argon2 zero time", with(3, "m=64,t=0,p=1")},
		{"argon2 time too large", with(3, "m=64,t=65,p=1")},
		{"argon2 zero threads", with(3, "m=64,t=1,p=0")},
		{"argon2 threads overflow", with(3, "m=64,t=1,p=256")},
		{"argon2 negative", with(3, "m=-64,t=1,p=1")},
		{"argon2 salt not base64", with(4, "!!!!!!!!!!!!")},
		{"argon2 salt too short", with(4, "c2FsdA")},
		{"argon2 key not base64", with(5, "%%%%")},
		{"argon2 key empty", with(5, "")},
		{"argon2 key too short", with(5, "c2hvcnQ")},
		{"argon2 key too long", with(5, strings.Repeat("A", 100))},
		{"bcrypt truncated", bc[:30]},
		{"bcrypt bad cost", bc[:4] + "99" + bc[6:]},
		{"bcrypt garbage", "$2a$04$" + strings.Repeat("!", 53)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ok, err := CheckPassword(tt.hash, "pw")
			if err == nil || ok {
				t.Fatalf("CheckPassword(%q) = %v, %v; want false and an error", tt.hash, ok, err)
			}
		})
	}
}

// tooCostly reports whether CheckPassword would spend long or allocate much
// on hash: a hash can ask for gigabytes of memory or 2^31 bcrypt rounds.
// That is fine for a trusted users file, not for a fuzzer. It parses the
// cost exactly as CheckPassword does.
func tooCostly(hash string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		parts := strings.Split(hash, "$")
		if len(parts) != 6 {
			return false
		}
		var p Argon2Params
		if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
			return false
		}
		return p.Memory > 4096 || p.Time > 2
	}
	if strings.HasPrefix(hash, "$2") {
		cost, err := bcrypt.Cost([]byte(hash))
		return err == nil && cost > 6
	}
	return false
}

// FuzzCheckPassword feeds arbitrary hash strings and passwords: CheckPassword
// never panics and never reports a match together with an error, and a
// fresh hash of any password verifies. Seeds are in
// testdata/fuzz/FuzzCheckPassword.
func FuzzCheckPassword(f *testing.F) {
	f.Add(mustHash(f, "pw", cheapArgon2), "pw")
	f.Add(mustBcrypt(f, "pw"), "pw")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$", "")
	f.Fuzz(func(t *testing.T, hash, password string) {
		if !tooCostly(hash) {
			ok, err := CheckPassword(hash, password)
			if ok && err != nil {
				t.Fatalf("CheckPassword(%q, %q) = true, %v", hash, password, err)
			}
		}
		h := mustHash(t, password, cheapArgon2)
		if ok, err := CheckPassword(h, password); !ok || err != nil {
			t.Fatalf("round trip of %q: %v, %v", password, ok, err)
		}
	})
}

func ExampleHashPassword() {
	h, _ := HashPassword("correct horse battery staple", DefaultArgon2)
	ok, _ := CheckPassword(h, "correct horse battery staple")
	fmt.Println(h[:30], ok)
	// Output: $argon2id$v=19$m=19456,t=2,p=1 true
}
