package runner

import (
	"errors"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
)

// AnswerOf describes a client error in lifecycle's terms: nil is a usable
// 2xx answer.
func AnswerOf(err error) lifecycle.Answer {
	if err == nil {
		return lifecycle.Answer{HTTPStatus: 200}
	}
	var e *runcomfy.Error
	if !errors.As(err, &e) {
		// Not the client's own error: nothing says whether it was sent.
		return lifecycle.Answer{Message: err.Error()}
	}
	return lifecycle.Answer{
		NotSent:    e.NotSent && e.HTTPStatus == 0,
		HTTPStatus: e.HTTPStatus,
		Code:       e.Code,
		Message:    e.Error(),
		Malformed:  runcomfy.IsMalformed(err),
	}
}

// pollAnswer describes a result call for lifecycle.Poll.
func pollAnswer(res runcomfy.Result, err error) lifecycle.PollAnswer {
	if err != nil {
		a := AnswerOf(err)
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
