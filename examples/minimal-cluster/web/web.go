package web

import (
	"embed"
	"net/http"
)

//go:embed index.html shoal.js cluster.html
var files embed.FS

// Handler serves the page (/), its script (/shoal.js) and the cluster page
// (/cluster.html, which reads StatusHandler's /cluster.json).
func Handler() http.Handler {
	fs := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		fs.ServeHTTP(w, r)
	})
}
