package controlplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Backend is the persistence under the Store: a transactional key-value space of named
// buckets. The bbolt file (OpenBolt) implements it, and so does etcd (OpenEtcd: several
// cloud gateway replicas on one store).
type Backend interface {
	// View runs fn on a consistent read-only view.
	View(fn func(Tx) error) error
	// Update runs fn in one serializable read-write transaction that is durable when
	// Update returns nil. If fn returns an error, nothing is written.
	Update(fn func(Tx) error) error
	Close() error
}

// Tx is one transaction of a Backend. Put and Delete fail in a View.
type Tx interface {
	Get(bucket, key string) []byte
	ForEach(bucket string, fn func(key string, val []byte) error) error
	Put(bucket, key string, val []byte) error
	Delete(bucket, key string) error
}

// Buckets of the store.
const (
	bucketObjects = "objects" // "Kind/name" -> object JSON (without status)
	bucketMeta    = "meta"    // keyRevision, keyIPAM, keyStoreID
	keyRevision   = "revision"
	keyIPAM       = "ipam"
	keyStoreID    = "storeID"
)

// DBFile is the name of the store's file in the state directory.
const DBFile = "egw.db"

// BoltBackend is the bbolt implementation of Backend. Every Update is fsynced before it
// returns (bbolt's NoSync stays false).
type BoltBackend struct{ db *bolt.DB }

// OpenBolt opens (creating if needed) <stateDir>/egw.db with mode 0600; stateDir is
// created with mode 0700 if missing.
func OpenBolt(stateDir string) (*BoltBackend, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(stateDir, DBFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	db.NoSync = false
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{bucketObjects, bucketMeta, bucketIPAM, bucketVIPs, bucketEndpoints, bucketTokens, bucketRevokedKeys, bucketHubs} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising store %s: %w", path, err)
	}
	return &BoltBackend{db: db}, nil
}

// Durable reports whether every committed transaction is fsynced.
func (b *BoltBackend) Durable() bool { return !b.db.NoSync }

// Path is the file of the store.
func (b *BoltBackend) Path() string { return b.db.Path() }

func (b *BoltBackend) View(fn func(Tx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *BoltBackend) Update(fn func(Tx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *BoltBackend) Close() error { return b.db.Close() }

type boltTx struct{ tx *bolt.Tx }

var errNoBucket = errors.New("no such bucket")

func (t boltTx) Get(bucket, key string) []byte {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

func (t boltTx) ForEach(bucket string, fn func(string, []byte) error) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return errNoBucket
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), append([]byte(nil), v...)) })
}

func (t boltTx) Put(bucket, key string, val []byte) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return errNoBucket
	}
	return b.Put([]byte(key), val)
}

func (t boltTx) Delete(bucket, key string) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return errNoBucket
	}
	return b.Delete([]byte(key))
}
