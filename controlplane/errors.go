package controlplane

import (
	"errors"
	"net/http"
	"strings"

	"github.com/egw-project/egw/api"
)

// ErrorCode classifies an Error; it maps to an HTTP status.
type ErrorCode int

const (
	CodeBadRequest  ErrorCode = iota + 1 // malformed request (400)
	CodeNotFound                         // no such object (404)
	CodeConflict                         // exists already, or stale resourceVersion (409)
	CodeInvalid                          // the objects are not acceptable (422)
	CodeTooLarge                         // body over the limit (413)
	CodeExhausted                        // no address left to allocate (507)
	CodeForbidden                        // refused: a join token or a revoked gateway (403)
	CodeInternal                         // failed on the server (500)
	CodeUnavailable                      // the store cannot take writes now (503)
)

// Error is an error of a store or API operation, naming the object ("Kind/name") and
// the field at fault where there is one.
type Error struct {
	Code    ErrorCode
	Message string
	Object  string
	Field   string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Object != "" {
		b.WriteString(e.Object)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// HTTPStatus is the status an API answer carries for e.
func (e *Error) HTTPStatus() int {
	switch e.Code {
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict:
		return http.StatusConflict
	case CodeInvalid:
		return http.StatusUnprocessableEntity
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeExhausted:
		return http.StatusInsufficientStorage
	case CodeForbidden:
		return http.StatusForbidden
	case CodeInternal:
		return http.StatusInternalServerError
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

// IsNotFound and IsConflict classify errors of the Store.
func IsNotFound(err error) bool { return codeOf(err) == CodeNotFound }
func IsConflict(err error) bool { return codeOf(err) == CodeConflict }

func codeOf(err error) ErrorCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var ve *api.ValidationError
	if errors.As(err, &ve) {
		return CodeInvalid
	}
	return 0
}

// toError turns any error of a write into an *Error: an api.ValidationError becomes
// CodeInvalid naming its first field error (the message lists them all).
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ve *api.ValidationError
	if errors.As(err, &ve) && len(ve.Errors) > 0 {
		return &Error{Code: CodeInvalid, Message: validationMessage(ve), Object: ve.Errors[0].Object, Field: ve.Errors[0].Field}
	}
	return &Error{Code: CodeBadRequest, Message: err.Error()}
}

// validationMessage lists the field errors (at most api.MaxReportedErrors, then a count of
// the rest); the first one's object and field are
// reported separately too, so its own text does not repeat them.
func validationMessage(ve *api.ValidationError) string {
	var parts []string
	for i, fe := range ve.Errors {
		if i == 0 {
			parts = append(parts, fe.Message)
			continue
		}
		parts = append(parts, fe.Object+": "+fe.Field+": "+fe.Message)
	}
	return strings.Join(parts, "; ") + ve.OmittedText()
}

// fieldErrors collects cross-object validation errors.
type fieldErrors []api.FieldError

func (f *fieldErrors) add(o api.Object, field, msg string) {
	*f = append(*f, api.FieldError{Object: api.Key(o), Field: field, Message: msg})
}

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return api.NewValidationError(f)
}
