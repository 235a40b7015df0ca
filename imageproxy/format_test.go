package imageproxy

import "testing"

func TestBucketOf(t *testing.T) {
	tests := []struct {
		name, accept string
		want         Format
	}{
		{"chrome", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", FormatAVIF},
		{"firefox", "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5", FormatAVIF},
		{"firefox 65", "image/webp,*/*", FormatWebP},
		{"safari 17", "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5", FormatAVIF},
		{"safari 13", "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5", FormatOriginal},
		{"curl", "*/*", FormatOriginal},
		{"image wildcard", "image/*", FormatOriginal},
		{"empty", "", FormatOriginal},
		{"avif refused", "image/avif;q=0,image/webp", FormatWebP},
		{"avif refused with spaces", "image/webp, image/avif ; q=0 ", FormatWebP},
		{"both refused", "image/avif;q=0.0, image/webp;q=0.000, */*", FormatOriginal},
		{"refusal wins over a repeat", "image/avif, image/avif;q=0", FormatOriginal},
		{"refusal after other params", "image/avif;x=1;q=0", FormatOriginal},
		{"low q still accepts", "image/avif;q=0.001", FormatAVIF},
		{"q=1", "image/webp;q=1", FormatWebP},
		{"malformed q counts for nothing", "image/avif;q=abc", FormatOriginal},
		{"case and spaces", "  IMAGE/AVIF ;Q=0.5", FormatAVIF},
		{"prefix is not a match", "image/avifx,image/webpz", FormatOriginal},
		{"q=0 on wildcard does not matter", "image/webp,*/*;q=0", FormatWebP},
		{"trailing commas", ",,image/webp,,", FormatWebP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BucketOf(tt.accept); got != tt.want {
				t.Errorf("BucketOf(%q) = %v, want %v", tt.accept, got, tt.want)
			}
		})
	}
}

func TestAcceptRoundTrip(t *testing.T) {
	for _, f := range []Format{FormatOriginal, FormatWebP, FormatAVIF} {
		if got := BucketOf(f.Accept()); got != f {
			t.Errorf("BucketOf(%v.Accept() = %q) = %v", f, f.Accept(), got)
		}
	}
}

func TestFormatString(t *testing.T) {
	for f, want := range map[Format]string{FormatOriginal: "original", FormatWebP: "webp", FormatAVIF: "avif", 9: "Format(9)"} {
		if got := f.String(); got != want {
			t.Errorf("Format(%d).String() = %q, want %q", f, got, want)
		}
	}
}

func TestBucketOfAllocs(t *testing.T) {
	accept := "image/avif;q=0,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
	if n := testing.AllocsPerRun(100, func() { BucketOf(accept) }); n != 0 {
		t.Errorf("BucketOf allocates %v times", n)
	}
}

func BenchmarkBucketOf(b *testing.B) {
	const chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
	b.ReportAllocs()
	for b.Loop() {
		if BucketOf(chrome) != FormatAVIF {
			b.Fatal("wrong bucket")
		}
	}
}
