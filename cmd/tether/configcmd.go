package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"sigs.k8s.io/yaml"

	"github.com/tether-mesh/tether/mesh"
)

// configTimeout bounds every store request of the config subcommands.
const configTimeout = 10 * time.Second

func newConfigCommand(g *globalFlags) *cobra.Command {
	var ef etcdFlags
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Validate, write, read and delete service documents in the store",
		Long: `Manage service documents. A file given with -f holds one or more service
documents in YAML or JSON, separated by lines of "---"; each must set "name".
The checks are the ones the agent's watcher runs, so a document that passes
here is one the agent accepts. "-f -" reads standard input.`,
	}
	ef.register(cmd.PersistentFlags())

	var file string
	validate := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check service documents without touching the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := readDocuments(file, ef.prefix)
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
			docs, err := readDocuments(file, ef.prefix)
			if err != nil {
				return err
			}
			return withStore(cmd.Context(), &ef, func(ctx context.Context, cli *clientv3.Client) error {
				ops := make([]clientv3.Op, len(docs))
				for i, d := range docs {
					ops[i] = clientv3.OpPut(d.key, string(d.body))
				}
				resp, err := cli.Txn(ctx).Then(ops...).Commit()
				if err != nil {
					return fmt.Errorf("write %d documents: %w", len(docs), err)
				}
				for _, d := range docs {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: written at revision %d\n", d.key, resp.Header.Revision)
				}
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{validate, apply} {
		c.Flags().StringVarP(&file, "file", "f", "", "file of service documents, or - for standard input")
		_ = c.MarkFlagRequired("file")
	}
	cmd.AddCommand(validate, apply, newConfigGetCommand(&ef), newConfigDeleteCommand(&ef))
	return cmd
}

func newConfigGetCommand(ef *etcdFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "get [SERVICE]...",
		Short: "Print service documents; with no name, list every service and invalid key",
		RunE: func(cmd *cobra.Command, names []string) error {
			return withStore(cmd.Context(), ef, func(ctx context.Context, cli *clientv3.Client) error {
				out := cmd.OutOrStdout()
				if len(names) == 0 {
					resp, err := cli.Get(ctx, ef.prefix+mesh.ServicesDir, clientv3.WithPrefix())
					if err != nil {
						return fmt.Errorf("list %s%s: %w", ef.prefix, mesh.ServicesDir, err)
					}
					for _, kv := range resp.Kvs {
						status := "valid"
						kind, name, _ := mesh.ParseKey(ef.prefix, string(kv.Key))
						if _, err := mesh.ParseService(string(kv.Key), name, kv.Value); err != nil || kind != mesh.KeyService {
							status = fmt.Sprintf("invalid: %v", err)
						}
						fmt.Fprintf(out, "%s\t%s\n", kv.Key, status)
					}
					return nil
				}
				for _, name := range names {
					key := mesh.ServiceKey(ef.prefix, name)
					resp, err := cli.Get(ctx, key)
					if err != nil {
						return fmt.Errorf("get %s: %w", key, err)
					}
					if len(resp.Kvs) == 0 {
						return fmt.Errorf("%s not found", key)
					}
					fmt.Fprintf(out, "# %s (revision %d)\n%s\n", key, resp.Kvs[0].ModRevision, bytes.TrimSpace(resp.Kvs[0].Value))
				}
				return nil
			})
		},
	}
}

func newConfigDeleteCommand(ef *etcdFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "delete (-f FILE | SERVICE...)",
		Short: "Delete service documents named on the command line or in a file",
		RunE: func(cmd *cobra.Command, names []string) error {
			var keys []string
			if file != "" {
				docs, err := readDocuments(file, ef.prefix)
				if err != nil {
					return err
				}
				for _, d := range docs {
					keys = append(keys, d.key)
				}
			}
			for _, n := range names {
				keys = append(keys, mesh.ServiceKey(ef.prefix, n))
			}
			if len(keys) == 0 {
				return errors.New("name a service or give -f FILE")
			}
			return withStore(cmd.Context(), ef, func(ctx context.Context, cli *clientv3.Client) error {
				for _, key := range keys {
					resp, err := cli.Delete(ctx, key)
					if err != nil {
						return fmt.Errorf("delete %s: %w", key, err)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %d deleted\n", key, resp.Deleted)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file of service documents whose names to delete, or - for standard input")
	return cmd
}

func withStore(ctx context.Context, ef *etcdFlags, fn func(context.Context, *clientv3.Client) error) error {
	cli, err := ef.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, configTimeout)
	defer cancel()
	return fn(ctx, cli)
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
	for i, part := range separator.Split(string(data), -1) {
		body := []byte(part)
		if len(bytes.TrimSpace(body)) == 0 {
			continue
		}
		var head struct {
			Name string `json:"name"`
		}
		if err := yaml.Unmarshal(body, &head); err != nil || head.Name == "" {
			errs = append(errs, fmt.Errorf("%s: document %d: field name: missing; the name sets the key %s<name>", path, i+1, prefix+mesh.ServicesDir))
			continue
		}
		key := mesh.ServiceKey(prefix, head.Name)
		if _, err := mesh.ParseService(key, head.Name, body); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", path, i+1, err))
			continue
		}
		docs = append(docs, document{key: key, body: bytes.TrimSpace(body)})
	}
	if len(docs) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s holds no documents", path))
	}
	return docs, errors.Join(errs...)
}
