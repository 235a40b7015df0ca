package imageproxy

import (
	"cmp"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// MaxRanges is the most byte ranges a request may ask for and still get
// a 206. RFC 9110, section 14.2 lets a server ignore Range, and asks it to
// beware of many small or overlapping ranges: net/http's ServeContent
// caps only their total size, so thousands of one-byte ranges made a
// multipart answer many times the image (the "Apache Killer",
// CVE-2011-3192). Browsers ask for one range.
const MaxRanges = 16

// boundedRange returns r, or a shallow copy of r without its Range header
// when Range asks for more than MaxRanges ranges or for ranges that
// overlap once resolved against size: such a request gets the whole
// object as a 200. A header that does not parse is left for ServeContent
// to refuse.
func boundedRange(r *http.Request, size int64) *http.Request {
	v, ok := r.Header["Range"]
	if !ok || len(v) != 1 || acceptableRanges(v[0], size) {
		return r
	}
	r2 := *r
	r2.Header = r.Header.Clone()
	delete(r2.Header, "Range")
	return &r2
}

// acceptableRanges reports whether a Range value may be served as asked:
// it does not parse (ServeContent answers that), or it has at most
// MaxRanges ranges and none overlaps another.
func acceptableRanges(v string, size int64) bool {
	specs, ok := strings.CutPrefix(v, "bytes=")
	if !ok {
		return true
	}
	if strings.Count(specs, ",") >= MaxRanges {
		return false
	}
	type span struct{ start, end int64 } // end exclusive
	var spans []span
	for spec := range strings.SplitSeq(specs, ",") {
		spec = trimOWS(spec)
		if spec == "" {
			continue
		}
		first, last, ok := strings.Cut(spec, "-")
		if !ok {
			return true
		}
		var s span
		switch {
		case first == "": // suffix: the last n bytes
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil {
				return true
			}
			s = span{max(size-n, 0), size}
		default:
			start, err := strconv.ParseInt(first, 10, 64)
			if err != nil {
				return true
			}
			end := size
			if last != "" {
				e, err := strconv.ParseInt(last, 10, 64)
				if err != nil {
					return true
				}
				end = min(e+1, size)
			}
			s = span{start, end}
		}
		if s.start >= s.end {
			continue // unsatisfiable: ServeContent drops it
		}
		spans = append(spans, s)
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			return false
		}
	}
	return true
}

// countingWriter counts the body bytes written through it to w, which is
// what a client was sent, whatever a reader behind it produced.
type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Header() http.Header { return c.w.Header() }
func (c *countingWriter) WriteHeader(s int)   { c.w.WriteHeader(s) }

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// ReadFrom keeps w's own ReadFrom (net/http's copies with a pooled
// buffer), so counting adds no 32 KiB buffer to every answer.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.w.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.n += n
		return n, err
	}
	return io.Copy(struct{ io.Writer }{c}, r)
}

// Unwrap lets http.ResponseController reach w.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.w }
