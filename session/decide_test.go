package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestVerdict(t *testing.T) {
	tests := []struct {
		v      Verdict
		name   string
		status int
	}{
		{Allowed, "allowed", 200},
		{Unauthenticated, "unauthenticated", 401},
		{Forbidden, "forbidden", 403},
		{Unavailable, "unavailable", 503},
		{Limited, "limited", 429},
		{Verdict(200), "verdict(200)", 503},
	}
	for _, tc := range tests {
		if tc.v.String() != tc.name || tc.v.Status() != tc.status {
			t.Errorf("Verdict(%d) = %q %d, want %q %d", uint8(tc.v), tc.v.String(), tc.v.Status(), tc.name, tc.status)
		}
	}
}

// errorKinds are the errors an authenticator or policy may return, with
// the decision each must give.
var errorKinds = []struct {
	name  string
	err   error
	want  Verdict
	retry time.Duration
}{
	{"nil", nil, Allowed, 0},
	{"unauthenticated", ErrUnauthenticated, Unauthenticated, 0},
	{"wrapped unauthenticated", fmt.Errorf("%w: token expired", ErrUnauthenticated), Unauthenticated, 0},
	{"forbidden", ErrForbidden, Forbidden, 0},
	{"wrapped forbidden", fmt.Errorf("%w: introspection denied", ErrForbidden), Forbidden, 0},
	{"twice wrapped forbidden", fmt.Errorf("outer: %w", fmt.Errorf("%w: inner", ErrForbidden)), Forbidden, 0},
	{"unavailable", ErrUnavailable, Unavailable, 5 * time.Second},
	{"wrapped unavailable", fmt.Errorf("%w: introspection timed out", ErrUnavailable), Unavailable, 5 * time.Second},
	{"unknown error fails closed", errors.New("something nobody foresaw"), Unavailable, 5 * time.Second},
	{"context canceled fails closed", context.Canceled, Unavailable, 5 * time.Second},
	{"limited sentinel", ErrLimited, Limited, 5 * time.Second},
	{"limited with delay", &LimitedError{RetryAfter: 7 * time.Second}, Limited, 7 * time.Second},
	{"wrapped limited with delay", fmt.Errorf("owner lookup: %w", &LimitedError{RetryAfter: 1500 * time.Millisecond}), Limited, 1500 * time.Millisecond},
	{"limited without delay", &LimitedError{}, Limited, 5 * time.Second},
	{"joined with forbidden", errors.Join(errors.New("x"), ErrForbidden), Forbidden, 0},
}

func TestClassify(t *testing.T) {
	for _, tc := range errorKinds {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// stubAuth answers every request with a fixed identity, outcome and error.
type stubAuth struct {
	id        Identity
	out       Outcome
	err       error
	challenge string
	vary      []string
}

func (s stubAuth) Authenticate(*http.Request, Image) (Identity, Outcome, error) {
	return s.id, s.out, s.err
}
func (s stubAuth) Challenge() string { return s.challenge }
func (s stubAuth) Vary() []string    { return s.vary }

// stubPolicy answers every image with a fixed error.
type stubPolicy struct{ err error }

func (p stubPolicy) Allow(context.Context, Identity, Image) error { return p.err }

// TestGateSameVerdict is the regression test for uploads answering 503
// to an introspection 403: for every kind of authenticator error, the
// image path and the upload path must give the same decision.
func TestGateSameVerdict(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/upload", nil)
	img := Image{ID: "img1", Variant: "public"}
	for _, tc := range errorKinds {
		t.Run(tc.name, func(t *testing.T) {
			auth := stubAuth{err: tc.err, out: Outcome{CacheHit: true}}
			if tc.err == nil {
				auth.id = Identity{Subject: "alice"}
			}
			g := NewGate(auth, Any{})
			image, upload := g.Image(r, img), g.Upload(r)
			for path, d := range map[string]Decision{"image": image, "upload": upload} {
				if d.Verdict != tc.want || d.RetryAfter != tc.retry || !d.CacheHit {
					t.Errorf("%s: verdict %v retry %v hit %v, want %v retry %v hit true", path, d.Verdict, d.RetryAfter, d.CacheHit, tc.want, tc.retry)
				}
				if (d.Err == nil) != (tc.want == Allowed) || d.Err != tc.err {
					t.Errorf("%s: Err = %v, want %v", path, d.Err, tc.err)
				}
			}
		})
	}
}

// The same holds for real authenticators: an application's 403 is
// Forbidden on both paths.
func TestGateIntrospectForbiddenUpload(t *testing.T) {
	app := newSessionApp(t)
	i := newTestIntrospect(t, IntrospectConfig{URL: app.URL})
	g := NewGate(i, Any{})
	for _, sid := range []string{"nope", "mallory", "err", "alice"} {
		image, upload := g.Image(withSID(sid), Image{ID: "img-a", Variant: "thumb"}), g.Upload(withSID(sid))
		if image.Verdict != upload.Verdict {
			t.Errorf("sid %s: image %v, upload %v", sid, image.Verdict, upload.Verdict)
		}
	}
	if d := g.Upload(withSID("nope")); d.Verdict != Forbidden || d.Verdict.Status() != http.StatusForbidden {
		t.Errorf("upload with a 403 session: %v %d", d.Verdict, d.Verdict.Status())
	}
}

func TestGateImagePolicy(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/img/img1/public", nil)
	alice := Identity{Subject: "alice"}
	for _, tc := range errorKinds {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGate(stubAuth{id: alice}, stubPolicy{err: tc.err})
			d := g.Image(r, Image{ID: "img1"})
			if d.Verdict != tc.want || d.RetryAfter != tc.retry || d.Err != tc.err {
				t.Errorf("verdict %v retry %v err %v, want %v %v %v", d.Verdict, d.RetryAfter, d.Err, tc.want, tc.retry, tc.err)
			}
			// The caller is known even when the policy refuses.
			if d.Identity.Subject != "alice" {
				t.Errorf("Identity = %+v", d.Identity)
			}
		})
	}
	// Uploads do not consult the policy: the image does not exist yet.
	g := NewGate(stubAuth{id: alice}, stubPolicy{err: ErrForbidden})
	if d := g.Upload(r); d.Verdict != Allowed {
		t.Errorf("upload consulted the policy: %v", d.Verdict)
	}
	// A nil policy is Any.
	if d := NewGate(stubAuth{id: alice}, nil).Image(r, Image{ID: "img1"}); d.Verdict != Allowed {
		t.Errorf("nil policy: %v", d.Verdict)
	}
}

func TestGateUploadNeedsSubject(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/upload", nil)
	for _, auth := range []Authenticator{None{}, stubAuth{id: Identity{Claims: map[string]any{"x": "y"}}}} {
		g := NewGate(auth, Any{})
		d := g.Upload(r)
		if d.Verdict != Unauthenticated || !errors.Is(d.Err, ErrUnauthenticated) || d.Err.Error() != "unauthenticated: the session names no subject" {
			t.Errorf("%T: %v %v", auth, d.Verdict, d.Err)
		}
		// The image path has no such rule: None is for public images.
		if d := g.Image(r, Image{ID: "img1"}); d.Verdict != Allowed {
			t.Errorf("%T image: %v %v", auth, d.Verdict, d.Err)
		}
	}
}

func TestGateHeaders(t *testing.T) {
	jwt, err := NewJWT(JWTConfig{Secret: testSecret, Sources: []TokenSource{{Cookie: "session"}, {Header: "authorization"}, {Cookie: "other"}}})
	if err != nil {
		t.Fatal(err)
	}
	cookieJWT, err := NewJWT(JWTConfig{Secret: testSecret, Sources: []TokenSource{{Cookie: "session"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		auth      Authenticator
		challenge []string
		vary      string
	}{
		{"jwt", jwt, []string{"Bearer"}, "Accept, Cookie, Authorization"},
		{"jwt cookie", cookieJWT, nil, "Accept, Cookie"},
		{"caddy_auth", Trusted{}, nil, "Accept, Cookie, Authorization"},
		{"none", None{}, nil, "Accept"},
	}
	for _, tc := range tests {
		g := NewGate(tc.auth, nil)
		if fmt.Sprint(g.Challenge()) != fmt.Sprint(tc.challenge) || (tc.challenge == nil) != (g.Challenge() == nil) {
			t.Errorf("%s: Challenge() = %q, want %q", tc.name, g.Challenge(), tc.challenge)
		}
		if v := g.Vary(); len(v) != 1 || v[0] != tc.vary {
			t.Errorf("%s: Vary() = %q, want [%q]", tc.name, v, tc.vary)
		}
	}
}

func TestNewGateNilAuthenticator(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("NewGate(nil, …) did not panic")
		}
	}()
	NewGate(nil, Any{})
}
