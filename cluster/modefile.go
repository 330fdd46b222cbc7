package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/shoal-sfu/shoal/affinity"
)

// modeFileName is the file in DataDir that keeps this node's mode across
// restarts.
const modeFileName = "mode.json"

// savedMode is the mode file's content.
type savedMode struct {
	Mode   string `json:"mode"`
	Reason string `json:"reason,omitempty"`
}

// modePath returns where this node keeps its mode, or "" when it keeps it
// in memory only: without a DataDir, and on a temporary node, which keeps
// nothing on disk (it starts normal).
func (n *Node) modePath() string {
	if n.cfg.DataDir == "" || n.cfg.Temporary {
		return ""
	}
	return filepath.Join(n.cfg.DataDir, modeFileName)
}

// loadMode restores the mode an earlier run saved; Start calls it before
// the node gossips. No file means normal. A file that cannot be read is an
// error: starting normal could admit connections the operator blocked.
func (n *Node) loadMode() error {
	path := n.modePath()
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: read the saved mode: %w", err)
	}
	var saved savedMode
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("cluster: the saved mode in %s is damaged (%v); set the mode again after removing the file", path, err)
	}
	mode, err := affinity.ParseMode(saved.Mode)
	if err != nil {
		return fmt.Errorf("cluster: the saved mode in %s: %w", path, err)
	}
	n.local.Lock()
	n.local.mode, n.local.reason = mode, saved.Reason
	n.local.Unlock()
	if mode != affinity.ModeNormal {
		n.logger.Info("cluster: mode restored from the last run", "mode", mode.String(), "reason", saved.Reason)
	}
	n.rebuild() // the snapshot shows it from the start
	return nil
}

// storeMode sets this node's mode; a node that keeps it saves it first,
// so that a failed save changes nothing.
func (n *Node) storeMode(mode affinity.Mode, reason string) error {
	n.modeMu.Lock()
	defer n.modeMu.Unlock()
	if path := n.modePath(); path != "" {
		b, err := json.Marshal(savedMode{Mode: mode.String(), Reason: reason})
		if err != nil {
			return err
		}
		if err := writeFileAtomic(path, b); err != nil {
			return fmt.Errorf("save the mode: %w", err)
		}
	}
	n.local.Lock()
	n.local.mode, n.local.reason = mode, reason
	n.local.Unlock()
	return nil
}

// writeFileAtomic replaces path with data: a crash leaves either the old
// file or the new one, whole.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // the rename itself; not every system can sync a directory
		d.Close()
	}
	return nil
}
