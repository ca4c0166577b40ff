package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
)

// CatalogEntry is what RunComfy's catalog said of a model, and when.
type CatalogEntry struct {
	Model        string
	InputSchema  string // JSON; "" when the catalog gave none
	BasePriceUSD string // JSON as given; "" when absent
	PriceUnit    string
	ReadAt       string // RFC 3339, UTC
}

// Digest identifies what the entry says, whenever it was read: two reads
// with the same digest found the same schema and price.
func (e CatalogEntry) Digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "%q\n%q\n%q\n", e.InputSchema, e.BasePriceUSD, e.PriceUnit)
	return hex.EncodeToString(h.Sum(nil))
}

// Catalog returns the catalog entries the ledger keeps, by model.
func (s *Store) Catalog(ctx context.Context) (_ map[string]CatalogEntry, err error) {
	defer wrapErr(&err, "ledger: read the model catalog")
	rows, err := s.db.QueryContext(ctx, "SELECT model, input_schema, base_price_usd, price_unit, read_at FROM catalog")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]CatalogEntry{}
	for rows.Next() {
		var e CatalogEntry
		if err := rows.Scan(&e.Model, &e.InputSchema, &e.BasePriceUSD, &e.PriceUnit, &e.ReadAt); err != nil {
			return nil, err
		}
		out[e.Model] = e
	}
	return out, rows.Err()
}

// SaveCatalog records entries, replacing what the ledger kept of their
// models.
func (s *Store) SaveCatalog(ctx context.Context, entries []CatalogEntry) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		for _, e := range entries {
			if _, err := tx.Exec(`INSERT INTO catalog (model, input_schema, base_price_usd, price_unit, digest, read_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (model) DO UPDATE SET input_schema = excluded.input_schema, base_price_usd = excluded.base_price_usd,
price_unit = excluded.price_unit, digest = excluded.digest, read_at = excluded.read_at`,
				e.Model, e.InputSchema, e.BasePriceUSD, e.PriceUnit, e.Digest(), e.ReadAt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: save the model catalog: %w", err)
	}
	return nil
}
