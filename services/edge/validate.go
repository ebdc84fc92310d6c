package edge

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"
)

// FieldViolation names one invalid request field (by its proto name) and
// says what is wrong with it.
type FieldViolation struct {
	Field       string
	Description string
}

// ValidationError is a request that failed validation. The edge turns it
// into InvalidArgument with an errdetails.BadRequest detail.
type ValidationError struct {
	Violations []FieldViolation
}

// Error implements error.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

func (e *ValidationError) connectError() error {
	return badRequest(e.Error(), e.Violations)
}

// Invalid returns a ValidationError for one field.
func Invalid(field, description string) error {
	return &ValidationError{Violations: []FieldViolation{{Field: field, Description: description}}}
}

// Validator validates command structs tagged for go-playground/validator.
// Fields are reported by their `field` tag (the proto field name). It is
// safe for concurrent use.
type Validator struct {
	v *validator.Validate
}

// NewValidator returns a Validator with Sluice's extra rules:
//   - maxbytes=N: a string of at most N bytes (max counts characters),
//   - utf8: valid UTF-8,
//   - nocontrol: no control or format characters (C* categories),
//   - httpurl: an absolute http or https URL with a host.
func NewValidator() *Validator {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		if name := f.Tag.Get("field"); name != "" {
			return name
		}
		return f.Name
	})
	must(v.RegisterValidation("maxbytes", func(fl validator.FieldLevel) bool {
		var n int
		if _, err := fmt.Sscan(fl.Param(), &n); err != nil {
			return false
		}
		return len(fl.Field().String()) <= n
	}))
	must(v.RegisterValidation("utf8", func(fl validator.FieldLevel) bool {
		return utf8.ValidString(fl.Field().String())
	}))
	must(v.RegisterValidation("nocontrol", func(fl validator.FieldLevel) bool {
		for _, r := range fl.Field().String() {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
				return false
			}
		}
		return true
	}))
	must(v.RegisterValidation("httpurl", func(fl validator.FieldLevel) bool {
		return isHTTPURL(fl.Field().String())
	}))
	return &Validator{v: v}
}

func must(err error) {
	if err != nil {
		panic(err) // only reachable through a programming error above
	}
}

// Struct validates cmd and returns a *ValidationError listing every invalid
// field, or nil.
func (v *Validator) Struct(cmd any) error {
	err := v.v.Struct(cmd)
	if err == nil {
		return nil
	}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return fmt.Errorf("validate: %w", err)
	}
	ve := &ValidationError{}
	seen := map[string]bool{}
	for _, fe := range verrs {
		field := fe.Field()
		if seen[field] {
			continue
		}
		seen[field] = true
		ve.Violations = append(ve.Violations, FieldViolation{Field: field, Description: describe(fe)})
	}
	return ve
}

func describe(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "min":
		return "must be at least " + fe.Param() + " characters"
	case "max":
		if fe.Kind() == reflect.Slice {
			return "must have at most " + fe.Param() + " items"
		}
		return "must be at most " + fe.Param() + " characters"
	case "maxbytes":
		return "must be at most " + fe.Param() + " bytes"
	case "utf8":
		return "must be valid UTF-8"
	case "nocontrol":
		return "must not contain control characters"
	case "httpurl":
		return "must be an absolute http or https URL"
	case "oneof":
		return "must be one of: " + fe.Param()
	default:
		return "is invalid (" + fe.Tag() + ")"
	}
}
