// Package emulator is a local stand-in for Cloudflare Images, so that
// imagegate can be run and tested with no Cloudflare account and no network.
//
// One http.Handler serves the three Cloudflare hosts as paths:
//
//	/client/v4/accounts/<account_id>/images/…   the Images API (api.cloudflare.com)
//	/images/…                                   the batch API (batch.imagedelivery.net)
//	POST /<account_hash>/<image_id>             one-time upload URLs (upload.imagedelivery.net)
//	GET  /<account_hash>/<image_id>/<variant>   delivery (imagedelivery.net)
//	GET  /cdn-cgi/imagedelivery/<account_hash>/<image_id>/<variant>
//
// It enforces the rules Cloudflare documents (upload limits, custom id rules,
// signed URLs checked against every signing key, error codes) and really
// renders variants. Where Cloudflare's behaviour is undocumented it takes the
// strict reading; DIFFERENCES.md lists every such choice.
//
// The package has no Caddy dependency; caddymodule/cfemulator adapts it.
package emulator

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/seed-a64a90cf/imagegate/imageref"
)

// Development defaults. They are public knowledge, which is the point: a
// fresh checkout works with no configuration.
const (
	DefaultAccountID          = "0123456789abcdef0123456789abcdef"
	DefaultAccountHash        = "emu-account-hash"
	DefaultAPIToken           = "dev-api-token"
	DefaultSigningKey         = "dev-signing-key"
	DefaultBrowserTTL         = 48 * time.Hour
	DefaultImageQuota         = 100_000
	DefaultRenderCacheEntries = 256

	// DefaultSigningKeyName is the name of the key Config.SigningKey seeds,
	// and of the key Cloudflare creates when the last one is deleted.
	DefaultSigningKeyName = "default"
)

// DefaultVariants returns the variants a new emulator has: Cloudflare's
// default "public" plus two that imagegate's examples use.
func DefaultVariants() []Variant {
	return []Variant{
		{ID: "public", Options: VariantOptions{Fit: FitScaleDown, Width: 1366, Height: 768, Metadata: "none"}},
		{ID: "thumbnail", Options: VariantOptions{Fit: FitCover, Width: 200, Height: 200, Metadata: "none"}},
		{ID: "avatar", Options: VariantOptions{Fit: FitCover, Width: 96, Height: 96, Metadata: "none"}, NeverRequireSignedURLs: true},
	}
}

// Config configures an Emulator. The zero value is usable: every empty
// field takes the documented default.
type Config struct {
	// AccountID is the 32-hex account id in API paths. Default DefaultAccountID.
	AccountID string
	// AccountHash is the URL-safe account hash in delivery and upload URLs.
	// Default DefaultAccountHash.
	AccountHash string
	// APIToken is the bearer token the API requires. Default DefaultAPIToken.
	APIToken string
	// SigningKey is the value of the signing key named "default". It is
	// (re)installed at every start, so the configured key always verifies.
	// Default DefaultSigningKey.
	SigningKey string
	// BaseURL is the emulator's external base URL (scheme, host, optional
	// port, no path), used for uploadURL and the variants of image objects.
	// Empty means derive it from each request's scheme and Host.
	BaseURL string
	// Variants are the named variants installed at every start, replacing
	// stored variants of the same name; others created through the API are
	// kept. Nil means DefaultVariants(). A "public" variant always exists.
	Variants []Variant
	// BrowserTTL is the max-age of public deliveries, unless the variant
	// sets browser_ttl. Default DefaultBrowserTTL (2 days).
	BrowserTTL time.Duration
	// FlexibleVariants enables option-style variants ("w=400,h=300").
	// Default false, as on Cloudflare.
	FlexibleVariants bool
	// ImageQuota is the number of images the account may hold
	// (stats "allowed"). Default DefaultImageQuota.
	ImageQuota int
	// Store holds images and state. Default a new MemoryStore.
	Store Store
	// RenderCacheEntries bounds the in-memory cache of rendered variants.
	// Default DefaultRenderCacheEntries.
	RenderCacheEntries int
	// Now is the clock. Default time.Now. Tests inject their own.
	Now func() time.Time
	// MaxDecodeBytes bounds the memory one image may take to decode,
	// estimated from its header before any pixel is allocated (width ×
	// height × the bytes per pixel of its colour model, more for
	// progressive JPEG and interlaced PNG), and separately the memory one
	// resize may take (scaler scratch and output canvas). Uploads over it
	// are refused (5413); deliveries of stored images over it answer 9413
	// without decoding. Default DefaultMaxDecodeBytes (256 MiB).
	MaxDecodeBytes int64
	// MaxConcurrentDecodes bounds how many images are decoded at once,
	// for variant renders and upload checks together, so decoding takes at
	// most about 2 × MaxDecodeBytes × MaxConcurrentDecodes. Concurrent
	// requests for one variant in one format share one render whatever
	// this is. Default runtime.NumCPU().
	MaxConcurrentDecodes int
	// DecodeTimeout bounds the time one decode may take, at upload and
	// for a variant render. A decode still running at its deadline stops
	// (its decoder gets no more input) and the image is refused as too
	// large: 5413 at upload, 9413 on delivery. An upload's decode also
	// stops when its client goes away. Default DefaultDecodeTimeout (10 s).
	DecodeTimeout time.Duration
	// OnDelivery, if set, is called once per delivery request with what
	// was answered. It lets callers count billable deliveries (one per 200
	// answer) without this package knowing how.
	OnDelivery func(Delivery)
	// URLFetchTimeout bounds the fetch of an upload from a URL (POST
	// images/v1 with url): connecting, at most MaxURLRedirects redirects,
	// headers and body (at most MaxFileBytes). Default
	// DefaultURLFetchTimeout (15 s).
	URLFetchTimeout time.Duration
	// APIRateLimit is how many API calls the API token may make in any
	// APIRateWindow; past it every API call is refused with 429, code 971
	// and Retry-After for APIRateBlock, as Cloudflare does. Default
	// DefaultAPIRateLimit (1,200 per 5 minutes, blocked for 5 minutes);
	// a negative value turns the limit off. Deliveries and one-time
	// uploads are not API calls and are not counted, nor are calls that
	// fail authentication.
	APIRateLimit int
	// APIRateWindow is the window of APIRateLimit. Default
	// DefaultAPIRateWindow (5 minutes).
	APIRateWindow time.Duration
	// APIRateBlock is how long the token stays refused once over
	// APIRateLimit. Default DefaultAPIRateBlock (5 minutes).
	APIRateBlock time.Duration
	// OnAPICall, if set, is called once per API request (on the API host
	// and the batch host) with what was answered.
	OnAPICall func(APICall)
	// AnyHost lets the emulator answer whatever Host a request names.
	// Default false: only a loopback IP literal (127.0.0.0/8, [::1]),
	// "localhost", or the host of BaseURL, on any port; any other Host gets
	// 421 Misdirected Request, so that a web page whose DNS name is
	// rebound to 127.0.0.1 cannot read the API or the signing keys.
	AnyHost bool
}

// Emulator is a local Cloudflare Images. Create it with New.
type Emulator struct {
	cfg   Config
	store Store
	// cache holds rendered variants, keyed by record sequence, geometry
	// and output format.
	cache *lru.Cache[string, *rendered]
	// renders coalesces concurrent render-cache misses for one key.
	renders singleflight.Group
	// decodeSlots holds a token per decode in progress.
	decodeSlots chan struct{}
	// baseHost is the host of cfg.BaseURL, which the Host check accepts.
	baseHost string
	// apiLimit is the API token's rate limit, nil when it is off.
	apiLimit *slidingWindow

	// batchMu guards batch, the live batch tokens.
	batchMu sync.Mutex
	batch   map[string]*batchToken

	// mu serialises read-modify-write sequences on the store (upload URL
	// use, id uniqueness, key and variant changes). Reads do not take it.
	mu sync.Mutex
}

// reservedHashes are the first path segments of the API, the batch host
// and custom-domain delivery, which an account hash cannot be.
var reservedHashes = []string{"client", "cdn-cgi", "images"}

// New returns an Emulator for cfg, filling defaults, validating the
// configuration and installing the configured variants and signing key.
func New(cfg Config) (*Emulator, error) {
	if cfg.AccountID == "" {
		cfg.AccountID = DefaultAccountID
	}
	if cfg.AccountHash == "" {
		cfg.AccountHash = DefaultAccountHash
	}
	if cfg.APIToken == "" {
		cfg.APIToken = DefaultAPIToken
	}
	if cfg.SigningKey == "" {
		cfg.SigningKey = DefaultSigningKey
	}
	if cfg.Variants == nil {
		cfg.Variants = DefaultVariants()
	}
	if cfg.BrowserTTL == 0 {
		cfg.BrowserTTL = DefaultBrowserTTL
	}
	if cfg.ImageQuota == 0 {
		cfg.ImageQuota = DefaultImageQuota
	}
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore()
	}
	if cfg.RenderCacheEntries == 0 {
		cfg.RenderCacheEntries = DefaultRenderCacheEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxDecodeBytes == 0 {
		cfg.MaxDecodeBytes = DefaultMaxDecodeBytes
	}
	if cfg.MaxConcurrentDecodes == 0 {
		cfg.MaxConcurrentDecodes = runtime.NumCPU()
	}
	if cfg.APIRateLimit == 0 {
		cfg.APIRateLimit = DefaultAPIRateLimit
	}
	if cfg.APIRateWindow == 0 {
		cfg.APIRateWindow = DefaultAPIRateWindow
	}
	if cfg.APIRateBlock == 0 {
		cfg.APIRateBlock = DefaultAPIRateBlock
	}
	if cfg.URLFetchTimeout == 0 {
		cfg.URLFetchTimeout = DefaultURLFetchTimeout
	}
	if cfg.DecodeTimeout == 0 {
		cfg.DecodeTimeout = DefaultDecodeTimeout
	}

	if !imageref.IsAccountID(cfg.AccountID) {
		return nil, fmt.Errorf("emulator: account id must be 32 lowercase hex digits")
	}
	if !imageref.IsURLSafe(cfg.AccountHash) || slices.Contains(reservedHashes, cfg.AccountHash) {
		return nil, fmt.Errorf("emulator: account hash must be URL-safe ([A-Za-z0-9_-]) and not a reserved path word")
	}
	var baseHost string
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("emulator: base URL must be an absolute http(s) URL with no path, query or credentials")
		}
		cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
		baseHost = u.Hostname()
	}
	if cfg.BrowserTTL < 0 || cfg.ImageQuota < 0 || cfg.RenderCacheEntries < 0 ||
		cfg.MaxDecodeBytes < 0 || cfg.MaxConcurrentDecodes < 0 || cfg.DecodeTimeout < 0 {
		return nil, fmt.Errorf("emulator: browser TTL, image quota, render cache size and decode limits must not be negative")
	}
	if cfg.APIRateWindow < 0 || cfg.APIRateBlock < 0 || cfg.URLFetchTimeout < 0 {
		return nil, fmt.Errorf("emulator: the API rate window and block and the URL fetch timeout must not be negative")
	}
	for _, v := range cfg.Variants {
		if err := validateVariant(v); err != nil {
			return nil, fmt.Errorf("emulator: variant %q: %s", v.ID, strings.ToLower(err.message))
		}
	}

	cache, err := lru.New[string, *rendered](max(cfg.RenderCacheEntries, 1))
	if err != nil {
		return nil, fmt.Errorf("emulator: creating render cache: %w", err)
	}
	e := &Emulator{
		cfg:         cfg,
		batch:       map[string]*batchToken{},
		store:       cfg.Store,
		cache:       cache,
		decodeSlots: make(chan struct{}, cfg.MaxConcurrentDecodes),
		baseHost:    baseHost,
	}
	if cfg.APIRateLimit > 0 {
		e.apiLimit = newSlidingWindow(cfg.APIRateLimit, cfg.APIRateWindow, cfg.APIRateBlock)
	}
	if err := e.seedState(); err != nil {
		return nil, err
	}
	prepareAVIF()
	return e, nil
}

// seedState merges the configured variants and signing key into the stored
// state, so that what the operator configured is always in force while what
// was created through the API survives a restart.
func (e *Emulator) seedState() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, _ := e.store.State()
	for _, v := range e.cfg.Variants {
		st.Variants = slices.DeleteFunc(st.Variants, func(o Variant) bool { return o.ID == v.ID })
		st.Variants = append(st.Variants, v)
	}
	if !slices.ContainsFunc(st.Variants, func(v Variant) bool { return v.ID == "public" }) {
		st.Variants = append(st.Variants, DefaultVariants()[0])
	}
	if len(st.Variants) > MaxVariants {
		return fmt.Errorf("emulator: more than %d variants configured and stored", MaxVariants)
	}
	others := slices.DeleteFunc(st.Keys, func(k Key) bool { return k.Name == DefaultSigningKeyName })
	// The configured key comes first; of the others keep the newest that fit.
	st.Keys = append([]Key{{Name: DefaultSigningKeyName, Value: e.cfg.SigningKey}},
		others[max(0, len(others)-(MaxKeys-1)):]...)
	if err := e.store.PutState(st); err != nil {
		return fmt.Errorf("emulator: saving state: %w", err)
	}
	return nil
}

// ServeHTTP routes a request to the API, the upload host or delivery,
// after checking its Host (see Config.AnyHost).
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !e.cfg.AnyHost && !e.hostAllowed(r.Host) {
		misdirected(w)
		return
	}
	p := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(p, "/client/v4/"):
		e.serveAPI(w, r, strings.TrimPrefix(p, "/client/v4/"))
	case strings.HasPrefix(p, "/images/"):
		e.serveBatch(w, r, strings.TrimPrefix(p, "/images/"))
	case strings.HasPrefix(p, "/cdn-cgi/imagedelivery/"):
		e.serveDelivery(w, r, strings.TrimPrefix(p, "/cdn-cgi/imagedelivery"))
	case r.Method == http.MethodPost || r.Method == http.MethodOptions:
		e.serveUpload(w, r, p)
	default:
		e.serveDelivery(w, r, p)
	}
}

// serveAPI serves /client/v4/accounts/<id>/images/<sub>, counting each
// authenticated call against the API token's rate limit.
func (e *Emulator) serveAPI(w http.ResponseWriter, r *http.Request, rest string) {
	call := APICall{}
	defer func() {
		if e.cfg.OnAPICall != nil {
			e.cfg.OnAPICall(call)
		}
	}()
	fail := func(cerr *codedError) {
		call.Status = cerr.status
		writeError(w, cerr)
	}
	acct, sub, ok := strings.Cut(strings.TrimPrefix(rest, "accounts/"), "/images/")
	if !strings.HasPrefix(rest, "accounts/") || !ok || acct == "" || strings.Contains(acct, "/") {
		fail(errNoRoute)
		return
	}
	if !e.authorized(r) {
		fail(errAuth)
		return
	}
	if e.apiLimit != nil {
		v := e.apiLimit.take(e.now())
		setRateHeaders(w.Header(), "default", e.apiLimit, v)
		if !v.ok {
			call.RateLimited = true
			fail(errRateLimited(e.apiLimit))
			return
		}
	}
	if subtle.ConstantTimeCompare([]byte(acct), []byte(e.cfg.AccountID)) != 1 {
		if imageref.IsAccountID(acct) {
			// A well-formed id the token has no access to.
			fail(errAuth)
		} else {
			fail(errBadAccount)
		}
		return
	}
	if sub == "v1/batch_token" {
		if r.Method != http.MethodGet {
			fail(errMethod)
			return
		}
		call.Status = http.StatusOK
		writeResult(w, http.StatusOK, e.newBatchToken(), nil)
		return
	}
	call.Status = e.answerAPI(w, r, sub)
}

// answerAPI routes an authorised, admitted API call and writes its answer,
// returning the status sent.
func (e *Emulator) answerAPI(w http.ResponseWriter, r *http.Request, sub string) int {
	result, info, cerr := e.routeAPI(r, sub)
	switch raw, isRaw := result.(rawBody); {
	case cerr != nil:
		writeError(w, cerr)
		return cerr.status
	case isRaw:
		w.Header().Set("Content-Type", http.DetectContentType(raw))
		w.Header().Set("Cache-Control", "no-store")
		w.Write(raw)
	default:
		writeResult(w, http.StatusOK, result, info)
	}
	return http.StatusOK
}

// apiFunc is an API endpoint: it returns the envelope's result (and
// result_info, if the endpoint has one) or a coded error.
type apiFunc func(r *http.Request) (any, []byte, *codedError)

func (e *Emulator) routeAPI(r *http.Request, sub string) (any, []byte, *codedError) {
	var routes map[string]apiFunc
	switch {
	case sub == "v1":
		routes = map[string]apiFunc{"GET": e.listV1, "POST": e.uploadV1}
	case sub == "v1/stats":
		routes = map[string]apiFunc{"GET": e.stats}
	case sub == "v1/variants":
		routes = map[string]apiFunc{"GET": e.listVariants, "POST": e.createVariant}
	case strings.HasPrefix(sub, "v1/variants/"):
		name, err := url.PathUnescape(strings.TrimPrefix(sub, "v1/variants/"))
		if err != nil {
			return nil, nil, errNoRoute
		}
		routes = map[string]apiFunc{
			"GET":    func(r *http.Request) (any, []byte, *codedError) { return e.getVariant(name) },
			"PATCH":  func(r *http.Request) (any, []byte, *codedError) { return e.updateVariant(r, name) },
			"DELETE": func(r *http.Request) (any, []byte, *codedError) { return e.deleteVariant(name) },
		}
	case sub == "v1/keys":
		routes = map[string]apiFunc{"GET": e.listKeys}
	case strings.HasPrefix(sub, "v1/keys/"):
		name, err := url.PathUnescape(strings.TrimPrefix(sub, "v1/keys/"))
		if err != nil {
			return nil, nil, errNoRoute
		}
		routes = map[string]apiFunc{
			"PUT":    func(r *http.Request) (any, []byte, *codedError) { return e.putKey(name) },
			"DELETE": func(r *http.Request) (any, []byte, *codedError) { return e.deleteKey(name) },
		}
	case sub == "v2":
		routes = map[string]apiFunc{"GET": e.listV2}
	case sub == "v2/direct_upload":
		routes = map[string]apiFunc{"POST": e.createDirectUpload}
	case strings.HasPrefix(sub, "v1/") && strings.HasSuffix(sub, "/blob"):
		id, ok := unescapeID(strings.TrimSuffix(strings.TrimPrefix(sub, "v1/"), "/blob"))
		if !ok {
			return nil, nil, errNotFound
		}
		routes = map[string]apiFunc{"GET": func(r *http.Request) (any, []byte, *codedError) { return e.blob(id) }}
	case strings.HasPrefix(sub, "v1/"):
		id, ok := unescapeID(strings.TrimPrefix(sub, "v1/"))
		if !ok {
			return nil, nil, errNotFound
		}
		routes = map[string]apiFunc{
			"GET":    func(r *http.Request) (any, []byte, *codedError) { return e.getImage(r, id) },
			"PATCH":  func(r *http.Request) (any, []byte, *codedError) { return e.updateImage(r, id) },
			"DELETE": func(r *http.Request) (any, []byte, *codedError) { return e.deleteImage(id) },
		}
	default:
		return nil, nil, errNoRoute
	}
	f, ok := routes[r.Method]
	if !ok {
		return nil, nil, errMethod
	}
	return f(r)
}

// authorized reports whether r carries the configured bearer token.
func (e *Emulator) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(e.cfg.APIToken)) == 1
}

// baseURL is the external base for upload and delivery URLs in responses:
// the configured one, else the request's scheme and Host, which ServeHTTP
// has checked unless Config.AnyHost is set.
func (e *Emulator) baseURL(r *http.Request) string {
	if e.cfg.BaseURL != "" {
		return e.cfg.BaseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if !isHostPort(host) {
		// Never reflect a malformed Host header into response bodies.
		host = "localhost"
	}
	return scheme + "://" + host
}

func (e *Emulator) now() time.Time { return e.cfg.Now() }

// isHostPort accepts the characters of a DNS name, IPv4/IPv6 literal and port.
func isHostPort(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' ||
			c == '-' || c == '.' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}
