package main

import (
	"context"
	"fmt"

	"comfybatch/lifecycle"
	"comfybatch/store"
)

// Fixture helpers: each builds a ledger the way a run would, through the
// one guarded Store.Apply, with the event texts a run writes.

func beginSubmit(st *store.Store, id string) (int, error) {
	if err := st.Apply(context.Background(), id, lifecycle.Step{To: lifecycle.Submitting}); err != nil {
		return 0, err
	}
	j, err := st.Job(context.Background(), id)
	return j.Attempts, err
}

func submitted(st *store.Store, id, req string) error {
	return st.Apply(context.Background(), id, lifecycle.Submit(lifecycle.Answer{HTTPStatus: 200}, req).Step)
}

func completed(st *store.Store, id, remote string, outs []string, cost *float64) error {
	return st.Apply(context.Background(), id, lifecycle.Step{To: lifecycle.Completed, Remote: remote, Outputs: outs, Cost: cost,
		Detail: fmt.Sprintf("%d output(s)", len(outs))})
}

func markDone(st *store.Store, id string) error {
	return st.Apply(context.Background(), id, lifecycle.Step{To: lifecycle.Done})
}

func failed(st *store.Store, id, remote, msg string, cost *float64) error {
	return st.Apply(context.Background(), id, lifecycle.Step{To: lifecycle.Failed, Remote: remote, Error: msg, Detail: msg, Cost: cost})
}

func cancelled(st *store.Store, id, remote, msg string) error {
	return st.Apply(context.Background(), id, lifecycle.Step{To: lifecycle.Cancelled, Remote: remote, Error: msg, Detail: msg})
}

func observe(st *store.Store, id string, to lifecycle.State, remote string, qp *int) error {
	return st.Apply(context.Background(), id, lifecycle.Step{To: to, Remote: remote, QueuePosition: qp})
}
