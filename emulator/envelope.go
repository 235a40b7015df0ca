package emulator

import (
	"encoding/json"
	"net/http"
)

// apiError is one entry of the v4 envelope's errors array.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// envelope is the v4 API response body every /client/v4 endpoint returns.
// ResultInfo is raw so that endpoints which Cloudflare documents with
// "result_info": null can say so, while the others leave it out.
type envelope struct {
	Result     any             `json:"result"`
	ResultInfo json.RawMessage `json:"result_info,omitempty"`
	Success    bool            `json:"success"`
	Errors     []apiError      `json:"errors"`
	Messages   []any           `json:"messages"`
}

// nullInfo is the result_info of endpoints that Cloudflare documents as
// returning "result_info": null.
var nullInfo = json.RawMessage("null")

// codedError is an API failure: the HTTP status and the Cloudflare error
// code and message that go into the envelope. Messages are fixed strings
// chosen here; they never echo request input.
type codedError struct {
	status  int
	code    int
	message string
}

func (e *codedError) Error() string { return e.message }

func errf(status, code int, message string) *codedError {
	return &codedError{status: status, code: code, message: message}
}

// Error codes. The 5xxx codes are those Cloudflare Images' API answers with;
// 7001/7003/10000 are the generic v4 API codes.
const (
	codeBadRequest      = 5400
	codeVariantNotFound = 5401
	codeImageNotFound   = 5404
	codeTooLarge        = 5413
	codeNotMultipart    = 5415
	codeUploadReceive   = 5450
	codeServiceLimit    = 5453
	codeBadFormat       = 5455
	codeInternal        = 5500
	codeMethod          = 7001
	codeNoRoute         = 7003
	codeAuth            = 10000
)

var (
	errAuth       = errf(http.StatusForbidden, codeAuth, "Authentication error")
	errNoRoute    = errf(http.StatusNotFound, codeNoRoute, "No route for the URI")
	errBadAccount = errf(http.StatusBadRequest, codeNoRoute, "Could not route to the requested path, perhaps your object identifier is invalid?")
	errMethod     = errf(http.StatusMethodNotAllowed, codeMethod, "Method not allowed for this route")
	errNotFound   = errf(http.StatusNotFound, codeImageNotFound, "Image not found")
	errInternal   = errf(http.StatusInternalServerError, codeInternal, "Internal error")
)

// writeResult writes a successful envelope.
func writeResult(w http.ResponseWriter, status int, result any, info json.RawMessage) {
	writeEnvelope(w, status, envelope{
		Result:     result,
		ResultInfo: info,
		Success:    true,
		Errors:     []apiError{},
		Messages:   []any{},
	})
}

// writeError writes a failed envelope: result null and exactly one error.
func writeError(w http.ResponseWriter, err *codedError) {
	writeEnvelope(w, err.status, envelope{
		Result:   nil,
		Success:  false,
		Errors:   []apiError{{Code: err.code, Message: err.message}},
		Messages: []any{},
	})
}

func writeEnvelope(w http.ResponseWriter, status int, env envelope) {
	body, err := json.Marshal(env)
	if err != nil {
		// Every result type is marshalable; this is a programming error.
		status = http.StatusInternalServerError
		body = []byte(`{"result":null,"success":false,"errors":[{"code":5500,"message":"Internal error"}],"messages":[]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}
