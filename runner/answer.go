package runner

import (
	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
)

// pollAnswer describes a result call for lifecycle.Poll.
func pollAnswer(res runcomfy.Result, err error) lifecycle.PollAnswer {
	if err != nil {
		a := runcomfy.AnswerOf(err)
		return lifecycle.PollAnswer{Failure: &a, Transient: runcomfy.IsTransient(err)}
	}
	return lifecycle.PollAnswer{
		Status:        res.Status,
		QueuePosition: res.QueuePosition,
		Output:        res.Output,
		Error:         runcomfy.ErrorText(res.Error),
		Cost:          res.Cost,
	}
}
