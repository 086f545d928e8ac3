package policy

import (
	"fmt"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/portvakt/portvakt/internal/strictyaml"
)

// noClients is refused rather than loaded as "deny everything": a daemon
// started with an empty policy is a mistake in its deployment, and one
// that would otherwise show only as every client being refused.
const noClients = "the policy has no clients; every request would be denied"

// Load reads and checks the policy file at path. Its problems name the
// file as path was given.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the policy: %w", err)
	}
	return Parse(path, data)
}

// Parse checks a policy and returns it, or every problem in it joined with
// errors.Join, each a *Problem printed as NAME:LINE: what is wrong and what
// to do. name is the file name the problems give.
func Parse(name string, data []byte) (*Policy, error) {
	ps := &problems{strictyaml.List{File: name}}
	root := ps.document(data)
	if root == nil {
		return nil, ps.err()
	}
	b := &builder{
		ps:     ps,
		names:  map[string]int{},
		owners: map[string]owner{},
		p:      &Policy{source: name, byName: map[string]*client{}, byIdentity: map[string]*client{}, unknownLimit: DefaultUnknownRateLimit},
	}
	b.policy(root)
	if ps.Len() > 0 {
		return nil, ps.err()
	}
	b.p.unknownLimiter = b.p.unknownLimit.limiter()
	return b.p, nil
}

// document parses the YAML and returns its root node, or nil when there is
// nothing to read further.
func (ps *problems) document(data []byte) *yaml.Node {
	root := ps.Document(data)
	if root == nil && ps.Len() == 0 {
		ps.addf(1, "%s", noClients)
	}
	return root
}

// builder turns the checked nodes into a Policy, remembering what must be
// unique across clients.
type builder struct {
	ps     *problems
	p      *Policy
	names  map[string]int   // client name → its line
	owners map[string]owner // canonical identity → who claimed it first
}

type owner struct {
	label string // client "billing", or the client at line N
	c     *client
	line  int
}

func (b *builder) policy(root *yaml.Node) {
	top, ok := b.ps.mapping(root, "the policy", "clients", "unknown_callers")
	if !ok {
		return
	}
	if f, ok := top["unknown_callers"]; ok {
		b.unknownCallers(f)
	}
	f, ok := top["clients"]
	if !ok {
		b.ps.addf(root.Line, "%s: add clients: with at least one client", noClients)
		return
	}
	if n := f.value; n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		b.ps.addf(f.key.Line, "%s", noClients)
		return
	}
	items, ok := b.ps.list(f, "clients", "[{name: billing, identities: [uid:1000], rules: [...]}]")
	if !ok {
		return
	}
	envs := map[string]bool{}
	for _, item := range items {
		c := b.client(item)
		if c == nil {
			continue
		}
		b.p.clients = append(b.p.clients, c)
		b.p.byName[c.name] = c
		for _, id := range c.identities {
			b.p.byIdentity[id] = c
		}
		for _, r := range c.rules {
			b.p.rules++
			for _, e := range r.environments {
				envs[e] = true
			}
		}
	}
	for e := range envs {
		b.p.environments = append(b.p.environments, e)
	}
	slices.Sort(b.p.environments)
}
