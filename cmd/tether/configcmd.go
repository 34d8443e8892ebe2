package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tether-mesh/tether/mesh"
)

// configTimeout bounds every store request of the config subcommands.
const configTimeout = 10 * time.Second

func newConfigCommand(g *globalFlags) *cobra.Command {
	var src sourceFlags
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Validate, write, read and delete service documents in the store",
		Long: `Manage service documents in etcd or Consul KV (--source). A file given with
-f holds one or more service documents in YAML or JSON, separated by lines of
"---"; each must set "name". The checks are the ones the agent's watcher runs,
so a document that passes here is one the agent accepts. "-f -" reads
standard input.`,
	}
	src.register(cmd.PersistentFlags())

	var file string
	validate := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check service documents without touching the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prefix, err := src.resolvedPrefix()
			if err != nil {
				return err
			}
			docs, err := readDocuments(file, prefix)
			if err != nil {
				return err
			}
			for _, d := range docs {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: valid\n", d.key)
			}
			return nil
		},
	}
	apply := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Validate service documents and write them, all or none",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prefix, err := src.resolvedPrefix()
			if err != nil {
				return err
			}
			docs, err := readDocuments(file, prefix)
			if err != nil {
				return err
			}
			return withStore(cmd.Context(), g, &src, func(ctx context.Context, st docStore) error {
				kvs := make(map[string][]byte, len(docs))
				for _, d := range docs {
					kvs[d.key] = d.body
				}
				rev, err := st.PutAll(ctx, kvs)
				if err != nil {
					return fmt.Errorf("write %d documents: %w", len(docs), err)
				}
				for _, d := range docs {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: written at revision %d\n", d.key, rev)
				}
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{validate, apply} {
		c.Flags().StringVarP(&file, "file", "f", "", "file of service documents, or - for standard input")
		_ = c.MarkFlagRequired("file")
	}
	cmd.AddCommand(validate, apply, newConfigGetCommand(g, &src), newConfigDeleteCommand(g, &src))
	return cmd
}

func newConfigGetCommand(g *globalFlags, src *sourceFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "get [SERVICE]...",
		Short: "Print service documents; with no name, list every service key and whether it is valid",
		RunE: func(cmd *cobra.Command, names []string) error {
			prefix, err := src.resolvedPrefix()
			if err != nil {
				return err
			}
			return withStore(cmd.Context(), g, src, func(ctx context.Context, st docStore) error {
				if len(names) == 0 {
					return listServices(ctx, cmd.OutOrStdout(), st, prefix)
				}
				for _, name := range names {
					key := mesh.ServiceKey(prefix, name)
					value, rev, found, err := st.Get(ctx, key)
					if err != nil {
						return fmt.Errorf("get %s: %w", key, err)
					}
					if !found {
						return fmt.Errorf("%s not found", key)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "# %s (revision %d)\n%s\n", key, rev, withName(name, bytes.TrimSpace(value)))
				}
				return nil
			})
		},
	}
}

// withName adds a name field to a YAML document that lacks one, so that
// the output of get can be applied again. JSON documents are returned as
// they are.
func withName(name string, doc []byte) []byte {
	var head struct {
		Name string `json:"name"`
	}
	if json.Valid(doc) || yaml.Unmarshal(doc, &head) != nil || head.Name != "" {
		return doc
	}
	return append([]byte("name: "+name+"\n"), doc...)
}

func listServices(ctx context.Context, out io.Writer, st docStore, prefix string) error {
	kvs, err := st.List(ctx, prefix+mesh.ServicesDir)
	if err != nil {
		return fmt.Errorf("list %s%s: %w", prefix, mesh.ServicesDir, err)
	}
	for _, key := range slices.Sorted(maps.Keys(kvs)) {
		status := "valid"
		kind, name, _ := mesh.ParseKey(prefix, key)
		if kind != mesh.KeyService {
			status = "invalid: not a service key"
		} else if _, err := mesh.ParseService(key, name, kvs[key]); err != nil {
			status = fmt.Sprintf("invalid: %v", err)
		}
		fmt.Fprintf(out, "%s\t%s\n", key, status)
	}
	return nil
}

func newConfigDeleteCommand(g *globalFlags, src *sourceFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "delete (-f FILE | SERVICE...)",
		Short: "Delete service documents named on the command line or in a file",
		RunE: func(cmd *cobra.Command, names []string) error {
			prefix, err := src.resolvedPrefix()
			if err != nil {
				return err
			}
			var keys []string
			if file != "" {
				docs, err := readDocuments(file, prefix)
				if err != nil {
					return err
				}
				for _, d := range docs {
					keys = append(keys, d.key)
				}
			}
			for _, n := range names {
				keys = append(keys, mesh.ServiceKey(prefix, n))
			}
			if len(keys) == 0 {
				return errors.New("name a service or give -f FILE")
			}
			return withStore(cmd.Context(), g, src, func(ctx context.Context, st docStore) error {
				for _, key := range keys {
					existed, err := st.Delete(ctx, key)
					if err != nil {
						return fmt.Errorf("delete %s: %w", key, err)
					}
					if existed {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: deleted\n", key)
					} else {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: not found\n", key)
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file of service documents whose names to delete, or - for standard input")
	return cmd
}

func withStore(ctx context.Context, g *globalFlags, src *sourceFlags, fn func(context.Context, docStore) error) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	st, err := src.store(log)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(ctx, configTimeout)
	defer cancel()
	err = fn(ctx, st)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: the %s store did not respond within %s; check that it runs and that %s names it",
			err, src.source, configTimeout, src.addressFlag())
	}
	return err
}

// document is one validated service document from a file.
type document struct {
	key  string
	body []byte
}

var separator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// readDocuments reads and validates every document in path. It returns
// every error it finds, not only the first.
func readDocuments(path, prefix string) ([]document, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var docs []document
	var errs []error
	n := 0
	for _, part := range separator.Split(string(data), -1) {
		body := []byte(part)
		if len(bytes.TrimSpace(body)) == 0 {
			continue
		}
		n++
		var head struct {
			Name string `json:"name"`
		}
		if err := yaml.Unmarshal(body, &head); err != nil {
			// The full parse names the problem; the key is a guess
			// because the name could not be read.
			_, perr := mesh.ParseService(path, "", body)
			errs = append(errs, fmt.Errorf("%s: document %d: %w", path, n, cmp.Or(perr, err)))
			continue
		}
		if head.Name == "" {
			errs = append(errs, fmt.Errorf("%s: document %d: field name: missing; the name sets the key %s<name>", path, n, prefix+mesh.ServicesDir))
			continue
		}
		key := mesh.ServiceKey(prefix, head.Name)
		if _, err := mesh.ParseService(key, head.Name, body); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", path, n, err))
			continue
		}
		docs = append(docs, document{key: key, body: bytes.TrimSpace(body)})
	}
	if len(docs) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s contains no documents", path))
	}
	return docs, errors.Join(errs...)
}
