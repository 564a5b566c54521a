package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/store"
)

// jtiSweepEvery is how often serve forgets expired assertion jtis: a jti
// only has to be remembered until its assertion expires (at most 5 minutes).
const jtiSweepEvery = 10 * time.Minute

// sweepJTIs prunes expired assertion jtis of every organization until ctx
// is done.
func sweepJTIs(ctx context.Context, backend store.Backend, log *slog.Logger) {
	t := time.NewTicker(jtiSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := pruneJTIs(ctx, backend, time.Now()); err != nil {
				log.Warn("pruning expired assertion jtis", slog.Any("error", err))
			} else if n > 0 {
				log.Debug("pruned expired assertion jtis", slog.Int("count", n))
			}
		}
	}
}

// pruneJTIs forgets, in every organization, the jtis whose assertions
// expired more than identity.ClockSkew before now, and says how many. The
// margin is for replicas: one whose clock runs ahead must not forget a jti
// whose assertion another, behind it, still takes for unexpired.
func pruneJTIs(ctx context.Context, backend store.Backend, now time.Time) (int, error) {
	var tenants []store.Tenant
	err := backend.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
		var err error
		tenants, err = tx.ListTenants(ctx)
		return err
	})
	if err != nil {
		return 0, err
	}
	total := 0
	for _, t := range tenants {
		err := backend.InTenantTx(ctx, t.ID, func(ctx context.Context, tx store.TenantTx) error {
			n, err := tx.AssertionJTIs().PruneJTIs(ctx, now.Add(-identity.ClockSkew))
			total += n
			return err
		})
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
