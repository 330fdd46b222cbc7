package redischannel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/cluster/multicluster"
)

// Channel is a gossip channel kept in Redis.
type Channel struct {
	name      string
	rdb       redis.UniversalClient
	own       bool // Close closes rdb
	entries   string
	orders    string
	malformed atomic.Uint64
}

var _ multicluster.GossipChannel = (*Channel)(nil)

// Prefix starts every key the channel writes: <Prefix><service>:entries
// and <Prefix><service>:order, two hashes whose fields are "cfg" and
// "gw:<address>".
const Prefix = "shoal:multicluster:"

// publishScript stores each (field, order, value) of ARGV unless the
// stored order is the same or higher, comparing the order strings byte by
// byte (Lua's own comparison follows the server's locale). It runs
// atomically in Redis, so a stale writer never overwrites a newer entry
// whatever the interleaving. It returns how many entries it stored.
var publishScript = redis.NewScript(`
local function newer(a, b)
  local la, lb = #a, #b
  for i = 1, math.min(la, lb) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return la > lb
end
local n = 0
for i = 1, #ARGV, 3 do
  local f, o, v = ARGV[i], ARGV[i+1], ARGV[i+2]
  local cur = redis.call('HGET', KEYS[2], f)
  if (not cur) or newer(o, cur) then
    redis.call('HSET', KEYS[2], f, o)
    redis.call('HSET', KEYS[1], f, v)
    n = n + 1
  end
end
return n
`)

// New returns the channel of service on the Redis at url
// (redis://[user:password@]host:port/db, or rediss:// for TLS; see
// redis.ParseURL). Close closes its client.
func New(url, service string) (*Channel, error) {
	if err := cluster.CheckServiceID(service); err != nil {
		return nil, err
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redischannel: %w", err)
	}
	c, err := NewWithClient(redis.NewClient(opt), service)
	if err != nil {
		return nil, err
	}
	c.own = true
	c.name = "redis://" + opt.Addr
	return c, nil
}

// NewWithClient returns the channel of service on a client of yours
// (a cluster or sentinel client, say); Close leaves it open.
func NewWithClient(rdb redis.UniversalClient, service string) (*Channel, error) {
	if err := cluster.CheckServiceID(service); err != nil {
		return nil, err
	}
	base := Prefix + service + ":"
	return &Channel{name: "redis", rdb: rdb, entries: base + "entries", orders: base + "order"}, nil
}

// Name implements multicluster.GossipChannel.
func (c *Channel) Name() string { return c.name }

// Malformed returns how many stored entries were skipped because they did
// not decode or check (written by something else than this package).
func (c *Channel) Malformed() uint64 { return c.malformed.Load() }

// Close closes the client if New made it.
func (c *Channel) Close() error {
	if c.own {
		return c.rdb.Close()
	}
	return nil
}

const cfgField = "cfg"

func gwField(addr string) string { return "gw:" + addr }

// Publish implements multicluster.GossipChannel.
func (c *Channel) Publish(ctx context.Context, d multicluster.Data) error {
	if err := d.Check(); err != nil {
		return fmt.Errorf("redischannel: publish: %w", err)
	}
	var args []any
	if d.Config != nil {
		b, err := json.Marshal(d.Config)
		if err != nil {
			return err
		}
		args = append(args, cfgField, d.Config.Order(), b)
	}
	for _, k := range slices.Sorted(maps.Keys(d.Gateways)) {
		g := d.Gateways[k]
		b, err := json.Marshal(g)
		if err != nil {
			return err
		}
		args = append(args, gwField(k), g.Order(), b)
	}
	if len(args) == 0 {
		return nil
	}
	if err := publishScript.Run(ctx, c.rdb, []string{c.entries, c.orders}, args...).Err(); err != nil {
		return fmt.Errorf("redischannel: publish: %w", err)
	}
	return nil
}

// Synchronize implements multicluster.GossipChannel.
func (c *Channel) Synchronize(ctx context.Context, d multicluster.Data) (multicluster.Data, error) {
	if err := c.Publish(ctx, d); err != nil {
		return multicluster.Data{}, err
	}
	all, err := c.Read(ctx)
	if err != nil {
		return multicluster.Data{}, err
	}
	return all.NewerThan(d), nil
}

// Read returns everything the channel holds for its service.
func (c *Channel) Read(ctx context.Context) (multicluster.Data, error) {
	m, err := c.rdb.HGetAll(ctx, c.entries).Result()
	if err != nil {
		return multicluster.Data{}, fmt.Errorf("redischannel: read: %w", err)
	}
	var out multicluster.Data
	for f, v := range m {
		switch {
		case f == cfgField:
			var cfg multicluster.Configuration
			if strictDecode(v, &cfg) != nil || (multicluster.Data{Config: &cfg}).Check() != nil {
				c.malformed.Add(1)
				continue
			}
			out.Merge(multicluster.Data{Config: &cfg})
		case strings.HasPrefix(f, "gw:"):
			var g multicluster.Gateway
			d := multicluster.Data{Gateways: map[string]multicluster.Gateway{f[3:]: g}}
			if strictDecode(v, &g) != nil {
				c.malformed.Add(1)
				continue
			}
			d.Gateways[f[3:]] = g
			if d.Check() != nil {
				c.malformed.Add(1)
				continue
			}
			out.Merge(d)
		default:
			c.malformed.Add(1)
		}
	}
	return out, nil
}

func strictDecode(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
