package session

import (
	"net/http"
	"strings"
	"testing"
)

// cookieCases are Cookie header lines (one request's, in order) and a name,
// chosen to walk net/http's rules: trimming, quotes, invalid bytes, empty
// values, duplicates, several lines, the cookie count limit.
var cookieCases = []struct {
	lines []string
	name  string
}{
	{nil, "session"},
	{[]string{""}, "session"},
	{[]string{"session=abc"}, "session"},
	{[]string{"a=1; session=abc; b=2"}, "session"},
	{[]string{"  session = abc ; b=2"}, "session"},
	{[]string{"\tsession=abc\t"}, "session"},
	{[]string{"session=\"abc\""}, "session"},
	{[]string{"session=\"abc"}, "session"},
	{[]string{"session=\""}, "session"},
	{[]string{"session=\"\""}, "session"},
	{[]string{"session=a\"b"}, "session"},
	{[]string{"session=a\\b; session=ok"}, "session"},
	{[]string{"session=caf\xc3\xa9; session=second"}, "session"},
	{[]string{"session=a b"}, "session"},
	{[]string{"session=; session=second"}, "session"},
	{[]string{"session; session=second"}, "session"},
	{[]string{"sessionx=1; xsession=2"}, "session"},
	{[]string{"Session=upper"}, "session"},
	{[]string{"session=a=b=c"}, "session"},
	{[]string{";;; ;session=abc;;"}, "session"},
	{[]string{"a=1", "session=from-second-line"}, "session"},
	{[]string{"session=first", "session=second"}, "session"},
	{[]string{"se ssion=abc"}, "se ssion"},
	{[]string{strings.Repeat("a=1;", 2999) + "session=abc"}, "session"},
	{[]string{strings.Repeat("a=1;", 3000) + "session=abc"}, "session"},
	{[]string{strings.Repeat("a=1;", 1500), strings.Repeat("b=1;", 1500) + "session=abc"}, "session"},
}

// TestCookieValueMatchesNetHTTP checks cookieValue against
// (*http.Request).Cookie, which it replaces on the hot path.
func TestCookieValueMatchesNetHTTP(t *testing.T) {
	for _, tc := range cookieCases {
		checkCookieValue(t, tc.lines, tc.name)
	}
}

// FuzzCookieValue checks cookieValue against (*http.Request).Cookie for
// any one or two Cookie lines and any valid name.
func FuzzCookieValue(f *testing.F) {
	for _, tc := range cookieCases {
		if len(tc.lines) == 1 {
			f.Add(tc.lines[0], "", tc.name)
		}
		if len(tc.lines) == 2 {
			f.Add(tc.lines[0], tc.lines[1], tc.name)
		}
	}
	f.Fuzz(func(t *testing.T, line1, line2, name string) {
		lines := []string{line1}
		if line2 != "" {
			lines = append(lines, line2)
		}
		checkCookieValue(t, lines, name)
	})
}

func checkCookieValue(t *testing.T, lines []string, name string) {
	t.Helper()
	if !validCookieName(name) {
		return // NewJWT refuses it
	}
	r := &http.Request{Header: http.Header{}}
	if lines != nil {
		r.Header["Cookie"] = lines
	}
	want, wantOK := "", false
	if c, err := r.Cookie(name); err == nil {
		want, wantOK = c.Value, true
	}
	got, ok := cookieValue(r.Header, name)
	if got != want || ok != wantOK {
		t.Errorf("Cookie lines %q, name %q: cookieValue = %q, %v; net/http's Request.Cookie = %q, %v", lines, name, got, ok, want, wantOK)
	}
}

// TestCookieValueAllocatesNothing: reading the session cookie among others
// costs no allocation, which is what replacing r.Cookie is for.
func TestCookieValueAllocatesNothing(t *testing.T) {
	h := http.Header{"Cookie": {`_ga=GA1.2.3; csrftoken=abcdef; session="eyJhbGciOi.eyJzdWIi.sig"; theme=dark`}}
	var v string
	if n := testing.AllocsPerRun(100, func() { v, _ = cookieValue(h, "session") }); n != 0 {
		t.Errorf("cookieValue allocates %v times per call, want 0", n)
	}
	if v != "eyJhbGciOi.eyJzdWIi.sig" {
		t.Errorf("cookieValue = %q", v)
	}
}

// TestJWTRefusesAnInvalidCookieName: a name no browser can send is a
// configuration mistake, reported, not a cookie never found.
func TestJWTRefusesAnInvalidCookieName(t *testing.T) {
	_, err := NewJWT(JWTConfig{Sources: []TokenSource{{Cookie: "my session"}}, Secret: testSecret})
	if err == nil || !strings.Contains(err.Error(), "not a valid cookie name") {
		t.Fatalf("NewJWT with cookie name %q: err = %v, want one naming the invalid cookie name", "my session", err)
	}
}
