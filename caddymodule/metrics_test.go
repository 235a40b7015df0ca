package caddymodule

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func gather(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// TestLabelsAreBounded sends 10,000 distinct ids, good and bad, with
// distinct unknown variants, and checks that not one series appears: every
// label value comes from the configuration.
func TestLabelsAreBounded(t *testing.T) {
	h := newTestHandler(t, nil)
	count := func() (series int) {
		for _, mf := range gather(t) {
			series += len(mf.GetMetric())
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if strings.Contains(l.GetValue(), "img-") || strings.Contains(l.GetValue(), "v-") {
						t.Fatalf("label %s=%q carries request data", l.GetName(), l.GetValue())
					}
				}
			}
		}
		return series
	}
	before := count()
	for i := range 10_000 {
		var target string
		switch i % 4 {
		case 0:
			target = fmt.Sprintf("/img/img-%d/public", i)
		case 1:
			target = fmt.Sprintf("/img/img-%d/v-%d", i, i) // unknown variant: 404
		case 2:
			target = fmt.Sprintf("/img/img-%d/..%%2F/thumbnail", i) // bad id: 400
		case 3:
			target = fmt.Sprintf("/img/img-%d/avatar", i)
		}
		serve(t, h, "GET", target, nil)
	}
	if after := count(); after != before {
		t.Fatalf("series grew from %d to %d with request data", before, after)
	}
}

func TestBillableDeliveries(t *testing.T) {
	h := newTestHandler(t, nil)
	billable := metrics.billable.WithLabelValues("thumbnail")
	notModified := metrics.requests.WithLabelValues("thumbnail", "not_modified")
	b0, n0 := testutil.ToFloat64(billable), testutil.ToFloat64(notModified)

	const path = "/img/abc/thumbnail"
	serve(t, h, "GET", path, nil)                                                     // 302: billable
	serve(t, h, "HEAD", path, nil)                                                    // HEAD: never followed
	w, _ := serve(t, h, "GET", path, map[string]string{"Accept": "application/json"}) // new JSON: billable
	etag := w.Header().Get("Etag")
	if etag == "" {
		t.Fatal("JSON answer has no ETag")
	}
	w, _ = serve(t, h, "GET", path, map[string]string{"Accept": "application/json", "If-None-Match": etag})
	if w.Code != 304 || w.Body.Len() != 0 {
		t.Fatalf("revalidation: status %d body %q, want 304", w.Code, w.Body.String())
	}
	if w, _ = serve(t, h, "GET", path, map[string]string{"Accept": "application/json", "If-None-Match": `"stale"`}); w.Code != 200 {
		t.Fatalf("stale ETag: status %d, want 200", w.Code)
	}
	if got := testutil.ToFloat64(billable) - b0; got != 3 {
		t.Errorf("billable deliveries = %v, want 3 (302, JSON, JSON after a stale ETag)", got)
	}
	if got := testutil.ToFloat64(notModified) - n0; got != 1 {
		t.Errorf("not_modified = %v, want 1", got)
	}
}

func TestRegisterMetricsTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		if err := registerMetrics(reg); err != nil {
			t.Fatalf("second registration in one registry: %v", err)
		}
	}
}

// TestKeyInfoFollowsRotation: after a rotation (a new config with a new key
// is provisioned, then the old one cleaned up) only the new key is shown.
func TestKeyInfoFollowsRotation(t *testing.T) {
	keyIDs := func() map[string]bool {
		ids := map[string]bool{}
		for _, mf := range gather(t) {
			if mf.GetName() != "imagegate_signing_key_info" {
				continue
			}
			for _, m := range mf.GetMetric() {
				ids[m.GetLabel()[0].GetValue()] = true
			}
		}
		return ids
	}
	old := newTestHandler(t, func(h *Handler) { h.SigningKey = "rotation-key-one" })
	both := newTestHandler(t, func(h *Handler) { h.SigningKey = "rotation-key-two" })
	if ids := keyIDs(); !ids[old.keyID] || !ids[both.keyID] {
		t.Fatalf("during the overlap: key ids %v, want both %s and %s", ids, old.keyID, both.keyID)
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if ids := keyIDs(); ids[old.keyID] || !ids[both.keyID] {
		t.Fatalf("after the old config is cleaned up: key ids %v, want only %s", ids, both.keyID)
	}
	_ = both.Cleanup()
}
