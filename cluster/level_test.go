package cluster

import (
	"log/slog"
	"os"
)

// levelFromEnv: SHOAL_CLUSTER_LOG=debug shows every log line in tests.
func levelFromEnv() slog.Level {
	switch os.Getenv("SHOAL_CLUSTER_LOG") {
	case "debug":
		return slog.LevelDebug
	case "info":
		return slog.LevelInfo
	}
	return slog.LevelWarn
}
