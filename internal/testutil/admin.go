package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// AdminPost sends one admin API request (POST with x-sora-target) through
// hc, and returns the answer's status, Location header and body (spaces
// trimmed). It fails only when no answer came.
func AdminPost(ctx context.Context, hc *http.Client, url, target, body string) (status int, location, respBody string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("x-sora-target", target)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", "", fmt.Errorf("POST %s %s: %w", url, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(bytes.TrimSpace(b)), nil
}

// ClusterNodes asks the admin API at url for ListClusterNodes (within 3 s)
// and returns each listed node_name with its connected flag.
func ClusterNodes(url string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// The target's name, spelled here: the signaling package, which names
	// it, imports this one in its tests.
	status, _, body, err := AdminPost(ctx, http.DefaultClient, url, "Sora_20211215.ListClusterNodes", "{}")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("ListClusterNodes: status %d: %s", status, body)
	}
	var nodes []struct {
		Name      string `json:"node_name"`
		Connected bool   `json:"connected"`
	}
	if err := json.Unmarshal([]byte(body), &nodes); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		out[n.Name] = n.Connected
	}
	return out, nil
}
