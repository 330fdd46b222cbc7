package web

import (
	"embed"
	"net/http"
)

//go:embed index.html shoal.js
var files embed.FS

// Handler serves the page (/) and its script (/shoal.js).
func Handler() http.Handler {
	fs := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		fs.ServeHTTP(w, r)
	})
}
