package testutil

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

// LogBuffer collects a logger's text output for a test to read, safely
// while the logger's goroutines still write.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// BufferLogger returns a logger writing records at level and above, in
// slog's text format, to a new LogBuffer.
func BufferLogger(level slog.Level) (*slog.Logger, *LogBuffer) {
	buf := &LogBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level})), buf
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Missing returns those of wants that the output does not contain.
func (b *LogBuffer) Missing(wants ...string) []string {
	out := b.String()
	var missing []string
	for _, w := range wants {
		if !strings.Contains(out, w) {
			missing = append(missing, w)
		}
	}
	return missing
}
