package mesh

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is matched by every error that reports an invalid document.
var ErrInvalid = errors.New("mesh: invalid document")

// FieldError reports one invalid field of one document.
type FieldError struct {
	// Key is the store key of the document, such as /tether/services/reviews.
	Key string
	// Field is the path of the field inside the document, such as
	// routes[0].backends[1].weight. It is empty when the whole document is
	// at fault (for example, it is not YAML at all).
	Field string
	// Reason is what is wrong, in lower case.
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("%s: field %s: %s", e.Key, e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// FieldErrors is every problem found in one document, in field order.
type FieldErrors []*FieldError

func (es FieldErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the single errors, so errors.As finds a *FieldError.
func (es FieldErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Is makes errors.Is(err, ErrInvalid) true for a non-empty FieldErrors.
func (es FieldErrors) Is(target error) bool { return target == ErrInvalid && len(es) > 0 }

// fieldErrors collects the errors of one document while it is validated.
type fieldErrors struct {
	key  string
	errs FieldErrors
}

func (f *fieldErrors) add(field, format string, args ...any) {
	f.errs = append(f.errs, &FieldError{Key: f.key, Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (f *fieldErrors) err() error {
	if len(f.errs) == 0 {
		return nil
	}
	return f.errs
}
