package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/hashicorp/consul/api"
	clientv3 "go.etcd.io/etcd/client/v3"

	consulwatch "github.com/tether-mesh/tether/watchers/consul"
)

// docStore is the part of a configuration store the config subcommands
// use: keys and values, written all or none.
type docStore interface {
	// PutAll writes every key, all or none, and returns the store
	// revision or index of the write.
	PutAll(ctx context.Context, kvs map[string][]byte) (int64, error)
	// Get returns a value and its modify revision; found is false when the
	// key does not exist.
	Get(ctx context.Context, key string) (value []byte, revision int64, found bool, err error)
	// List returns every key and value under prefix.
	List(ctx context.Context, prefix string) (map[string][]byte, error)
	// Delete removes a key and reports whether it existed.
	Delete(ctx context.Context, key string) (bool, error)
	Close()
}

// store opens the store the flags name. Its client logs through log.
func (s *sourceFlags) store(log *slog.Logger) (docStore, error) {
	if s.source == sourceConsul {
		cfg := s.consul.config(consulwatch.DefaultPrefix)
		cfg.Logger = log
		cli, err := consulwatch.NewClient(cfg)
		if err != nil {
			return nil, err
		}
		return consulStore{kv: cli.KV()}, nil
	}
	cli, err := s.etcd.client(log)
	if err != nil {
		return nil, err
	}
	return etcdStore{cli: cli}, nil
}

type etcdStore struct{ cli *clientv3.Client }

func (s etcdStore) PutAll(ctx context.Context, kvs map[string][]byte) (int64, error) {
	ops := make([]clientv3.Op, 0, len(kvs))
	for k, v := range kvs {
		ops = append(ops, clientv3.OpPut(k, string(v)))
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

func (s etcdStore) Get(ctx context.Context, key string) ([]byte, int64, bool, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return nil, 0, false, err
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, true, nil
}

func (s etcdStore) List(ctx context.Context, prefix string) (map[string][]byte, error) {
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = kv.Value
	}
	return out, nil
}

func (s etcdStore) Delete(ctx context.Context, key string) (bool, error) {
	resp, err := s.cli.Delete(ctx, key)
	if err != nil {
		return false, err
	}
	return resp.Deleted > 0, nil
}

func (s etcdStore) Close() { s.cli.Close() }

// consulStore writes Consul KV. A transaction has a size limit, so PutAll
// rejects more documents than maxConsulTxnOps rather than writing part of
// them.
type consulStore struct{ kv *api.KV }

// maxConsulTxnOps is the largest transaction PutAll sends. Consul 1.14
// accepts 128 operations; 64 is the limit older releases documented.
const maxConsulTxnOps = 64

func (s consulStore) PutAll(ctx context.Context, kvs map[string][]byte) (int64, error) {
	if len(kvs) > maxConsulTxnOps {
		return 0, fmt.Errorf("%d documents in one apply; Consul writes at most %d in one transaction: split the file", len(kvs), maxConsulTxnOps)
	}
	ops := make(api.KVTxnOps, 0, len(kvs))
	for k, v := range kvs {
		ops = append(ops, &api.KVTxnOp{Verb: api.KVSet, Key: k, Value: v})
	}
	ok, resp, _, err := s.kv.Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, err
	}
	if !ok {
		msgs := make([]string, len(resp.Errors))
		for i, e := range resp.Errors {
			msgs[i] = e.What
		}
		return 0, fmt.Errorf("consul rejected the transaction: %s", strings.Join(msgs, "; "))
	}
	// A transaction response carries no X-Consul-Index header, so the
	// index is the highest one the transaction wrote.
	var index uint64
	for _, r := range resp.Results {
		if r != nil {
			index = max(index, r.ModifyIndex)
		}
	}
	return int64(index), nil
}

func (s consulStore) Get(ctx context.Context, key string) ([]byte, int64, bool, error) {
	pair, _, err := s.kv.Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || pair == nil {
		return nil, 0, false, err
	}
	return pair.Value, int64(pair.ModifyIndex), true, nil
}

func (s consulStore) List(ctx context.Context, prefix string) (map[string][]byte, error) {
	pairs, _, err := s.kv.List(prefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(pairs))
	for _, p := range pairs {
		out[p.Key] = p.Value
	}
	return out, nil
}

func (s consulStore) Delete(ctx context.Context, key string) (bool, error) {
	pair, _, err := s.kv.Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return false, err
	}
	if pair == nil {
		return false, nil
	}
	// Delete only the version read, so a concurrent write is not lost.
	ok, _, err := s.kv.DeleteCAS(pair, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("%s changed while it was being deleted; run the command again", key)
	}
	return true, nil
}

func (s consulStore) Close() {}
