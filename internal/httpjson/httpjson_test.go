package httpjson

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		write  func(http.ResponseWriter)
		status int
		body   string
	}{
		{"value", func(w http.ResponseWriter) { Write(w, http.StatusCreated, []int{1, 2}) }, http.StatusCreated, `[1,2]`},
		{"error", func(w http.ResponseWriter) { Error(w, http.StatusBadRequest, `missing field "x"`) }, http.StatusBadRequest, `{"error":"missing field \"x\""}`},
		{"unencodable", func(w http.ResponseWriter) { Write(w, http.StatusOK, func() {}) }, http.StatusInternalServerError, `{"error":"encoding the answer failed"}`},
	} {
		rec := httptest.NewRecorder()
		tc.write(rec)
		if rec.Code != tc.status || rec.Body.String() != tc.body || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q %q, want %d %q application/json", tc.name, rec.Code, rec.Body, rec.Header().Get("Content-Type"), tc.status, tc.body)
		}
	}
}
