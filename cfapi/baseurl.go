package cfapi

import (
	"errors"
	"net/url"
	"strings"
)

// ValidateBaseURL reports whether s can be a Client's BaseURL: an absolute
// http or https URL with a host and no credentials, query or fragment. The
// error never repeats s, which may hold credentials.
func ValidateBaseURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		// url.Parse's error quotes the whole URL.
		return errors.New("not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("scheme must be http or https")
	case u.Opaque != "" || u.Host == "":
		return errors.New("must be absolute, with a host")
	case u.User != nil:
		// Errors from net/http quote the request URL, so credentials in
		// it would reach logs; the API takes the token in a header.
		return errors.New("must not contain credentials")
	case u.RawQuery != "" || u.ForceQuery:
		return errors.New("must not have a query")
	case strings.Contains(s, "#"):
		// Even an empty fragment would swallow the paths appended to it.
		return errors.New("must not have a fragment")
	}
	return nil
}
