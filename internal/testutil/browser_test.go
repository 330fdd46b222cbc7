package testutil

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestBrowserRunsPageWithFakeCamera opens a page that asks for the camera and
// microphone and reports what it got, proving the browser helper's flags.
func TestBrowserRunsPageWithFakeCamera(t *testing.T) {
	got := make(chan string, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<script>
navigator.mediaDevices.getUserMedia({audio: true, video: true})
  .then(s => s.getTracks().map(t => t.kind).sort().join(","))
  .catch(e => "error: " + e)
  .then(r => fetch("/report", {method: "POST", body: r}));
</script>`))
	})
	mux.HandleFunc("/report", func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 100)
		n, _ := r.Body.Read(b)
		select {
		case got <- string(b[:n]):
		default:
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	Browser(t, srv.URL)
	select {
	case r := <-got:
		if r != "audio,video" {
			t.Fatalf("page got %q, want audio,video", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("page did not report within 30 s")
	}
}
