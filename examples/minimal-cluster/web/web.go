package web

import (
	"embed"
	"net/http"

	"github.com/shoal-sfu/shoal"
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

// AdminHandler serves n's admin API at whatever path it is mounted, such
// as /api: the admin API is POST /, so the request goes on with its path
// set to "/".
func AdminHandler(n *shoal.Node) http.Handler {
	admin := n.AdminHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/"
		admin.ServeHTTP(w, r2)
	})
}
