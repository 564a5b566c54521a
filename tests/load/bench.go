package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"
)

// Benchmark runs the comparison: it starts the servers it needs (the
// AgentSigna demo unless o.TargetURL names a running service, and OPA),
// checks that each answers the request with an allow, then measures OPA
// and AgentSigna in closed loops (alternating rounds) and AgentSigna at
// a fixed arrival rate (with the stage histograms the service kept over
// that window, when it has a pprof listener), then GET /healthz at that rate (the floor under
// any answer) and a write and fsync at that rate (the floor under a
// durable answer), then OPA at half its own rate (the latency goal applied to
// the reference). It stops what it started before returning.
func Benchmark(ctx context.Context, o Options, progress io.Writer) (rep Report, err error) {
	if err := o.validate(); err != nil {
		return Report{}, err
	}
	dir, err := os.MkdirTemp("", "agentsigna-load-")
	if err != nil {
		return Report{}, err
	}
	defer os.RemoveAll(dir)
	client := newClient(o.Concurrency, o.RequestTimeout)
	defer client.CloseIdleConnections()
	stopLater := func(p *process) {
		if serr := p.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}

	tenantURL, credsFile, store, pprofURL := o.TargetURL, o.Credentials, o.Store, o.PprofURL
	var asClocks serverClocks
	if o.ServerPID > 0 {
		asClocks.server = processCPU(o.ServerPID)
	}
	if o.DatabaseProcess != "" {
		asClocks.database = processesNamed(o.DatabaseProcess)
	}
	if tenantURL == "" {
		fmt.Fprintln(progress, "load: starting agentsigna serve --demo on a fresh embedded store")
		p, u, c, d, err := startDemo(ctx, o, client, dir)
		if err != nil {
			return Report{}, err
		}
		defer stopLater(p)
		tenantURL, credsFile, pprofURL = u, c, d
		if haveProc() {
			asClocks.server = processCPU(p.cmd.Process.Pid)
		}
		if store == "" {
			store = "embedded (SQLite)"
		}
	}
	creds, err := readCredentials(credsFile)
	if err != nil {
		return Report{}, err
	}
	counterparty := o.Counterparty
	if counterparty == "" {
		if counterparty, err = creds.verifiedCounterparty(); err != nil {
			return Report{}, err
		}
	}
	tokens, err := newTokenSource(ctx, o.AgentSigna, credsFile, tenantURL, client)
	if err != nil {
		return Report{}, err
	}
	renewCtx, stopRenewing := context.WithCancel(ctx)
	var renewing sync.WaitGroup
	renewing.Go(func() { tokens.renew(renewCtx, progress) })
	defer func() { stopRenewing(); renewing.Wait() }()
	as, err := newAgentSignaTarget(client, tenantURL, tokens, counterparty)
	if err != nil {
		return Report{}, err
	}
	profile, err := as.probe(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("agentsigna: %w", err)
	}

	if err := asClocks.check(); err != nil {
		return Report{}, fmt.Errorf("agentsigna: %w", err)
	}
	opaBin := o.OPA
	if opaBin == "" {
		fmt.Fprintln(progress, "load: building opa")
		if opaBin, err = buildOPA(ctx, dir); err != nil {
			return Report{}, err
		}
	}
	op, opaURL, err := startOPA(ctx, o, opaBin, client, dir)
	if err != nil {
		return Report{}, err
	}
	defer stopLater(op)
	ot, err := newOPATarget(client, opaURL, profile, counterparty)
	if err != nil {
		return Report{}, err
	}
	if err := ot.Do(ctx); err != nil {
		return Report{}, fmt.Errorf("opa: the first evaluation: %w", err)
	}

	rep = Report{Store: store, CPUs: runtime.NumCPU(), Options: o}
	phase := func(what string) {
		fmt.Fprintf(progress, "load: %s: %s warm-up, %s measured\n", what, o.Warmup, o.Duration)
	}
	// The closed loops, in Options.Rounds slices pooled per server, each
	// round both servers in turn (one round: OPA, then AgentSigna, whole).
	slice := o.Duration / time.Duration(o.Rounds)
	var opaRounds, asRounds []Result
	for r := 0; r < o.Rounds && ctx.Err() == nil; r++ {
		warmup := o.Warmup
		if r > 0 {
			warmup /= 10
		}
		phaseOf := func(what string) {
			if o.Rounds > 1 {
				what = fmt.Sprintf("%s, round %d of %d", what, r+1, o.Rounds)
			}
			fmt.Fprintf(progress, "load: %s: %s warm-up, %s measured\n", what, warmup, slice)
		}
		runOPA := func() {
			phaseOf("opa, closed loop")
			opaRounds = append(opaRounds, closedLoop(ctx, ot, serverClocks{server: processCPU(op.cmd.Process.Pid)}, o.Concurrency, warmup, slice, o.RequestTimeout))
		}
		runAgentSigna := func() error {
			phaseOf("agentsigna, closed loop")
			var profiled sync.WaitGroup
			var profileErr error
			if o.CPUProfile != "" { // one round only (validate)
				profiled.Go(func() { profileErr = captureCPUProfile(ctx, pprofURL, o.CPUProfile, warmup, slice) })
			}
			asRounds = append(asRounds, closedLoop(ctx, as, asClocks, o.Concurrency, warmup, slice, o.RequestTimeout))
			profiled.Wait()
			return profileErr
		}
		// ABBA: which server goes first alternates, so that a machine
		// drifting steadily over the run drifts under both alike.
		var err error
		if r%2 == 0 {
			runOPA()
			err = runAgentSigna()
		} else {
			err = runAgentSigna()
			runOPA()
		}
		if err != nil {
			return Report{}, err
		}
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	rep.OPA, rep.AgentSigna = pool(opaRounds), pool(asRounds)
	if o.CPUProfile != "" {
		fmt.Fprintf(progress, "load: agentsigna CPU profile of the closed loop in %s\n", o.CPUProfile)
	}
	rate := o.OpenRate
	if rate == 0 {
		rate = rep.AgentSigna.Rate / 2
	}
	if rate > 0 && ctx.Err() == nil {
		phase(fmt.Sprintf("agentsigna, open loop at %s", formatRate(rate)))
		stages := startStageWindow(ctx, client, pprofURL, o.Warmup)
		open := openLoop(ctx, as, rate, o.Concurrency, o.Warmup, o.Duration, o.RequestTimeout)
		rep.Open = &open
		// A diagnostic: the phases after it run whatever became of it.
		if rep.Stages, rep.StagesErr = stages.end(ctx); rep.StagesErr != nil {
			fmt.Fprintf(progress, "load: %v\n", rep.StagesErr)
		}
		if ctx.Err() == nil {
			phase(fmt.Sprintf("floor: GET /healthz, open loop at %s", formatRate(rate)))
			floor := openLoop(ctx, newHealthzTarget(client, tenantURL), rate, o.Concurrency, o.Warmup, o.Duration, o.RequestTimeout)
			rep.Floor = &floor
		}
		if ctx.Err() == nil {
			disk, err := newSyncTarget(dir)
			if err != nil {
				return rep, err
			}
			phase(fmt.Sprintf("floor: %s, open loop at %s", disk.Name(), formatRate(rate)))
			floor := openLoop(ctx, disk, rate, o.Concurrency, o.Warmup, o.Duration, o.RequestTimeout)
			rep.DiskFloor = &floor
			if err := disk.Close(); err != nil {
				return rep, err
			}
		}
		// Half OPA's own rate, whatever --open-rate chose for AgentSigna:
		// a rate above what OPA serves would fail the run, not measure it.
		if opaRate := rep.OPA.Rate / 2; ctx.Err() == nil && opaRate > 0 {
			phase(fmt.Sprintf("opa, open loop at %s", formatRate(opaRate)))
			opaOpen := openLoop(ctx, ot, opaRate, o.Concurrency, o.Warmup, o.Duration, o.RequestTimeout)
			rep.OPAOpen = &opaOpen
		}
	}
	return rep, ctx.Err()
}
