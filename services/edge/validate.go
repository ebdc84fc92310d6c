package edge

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"

	"github.com/sluicehq/sluice/authz"
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
//   - nocontrol: no control or format characters (C* categories), for
//     names and ids,
//   - text: free text (message bodies): no control characters except tab
//     and newline, no bidirectional embeddings, overrides or isolates, no
//     line or paragraph separators and no deprecated or byte-order-mark
//     format characters; other format characters (ZWJ in emoji, ZWNJ,
//     LRM/RLM) are text,
//   - httpurl: an absolute http or https URL with a host,
//   - userid: not in the service principals' namespace ("service:…"; see
//     authz.IsServiceID), for fields that name a user.
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
	must(v.RegisterValidation("text", func(fl validator.FieldLevel) bool {
		return IsText(fl.Field().String())
	}))
	must(v.RegisterValidation("httpurl", func(fl validator.FieldLevel) bool {
		return isHTTPURL(fl.Field().String())
	}))
	must(v.RegisterValidation("userid", func(fl validator.FieldLevel) bool {
		return !authz.IsServiceID(fl.Field().String())
	}))
	return &Validator{v: v}
}

func must(err error) {
	if err != nil {
		panic(err) // only reachable through a programming error above
	}
}

// Struct validates cmd and returns a *ValidationError listing every invalid
// field, or nil. Handlers call Validate, which also traces.
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
		field := fieldName(fe.Field())
		if seen[field] {
			continue
		}
		seen[field] = true
		ve.Violations = append(ve.Violations, FieldViolation{Field: field, Description: describe(fe)})
	}
	return ve
}

// fieldName is the name a violation reports: the proto field name, with
// the index of a repeated field ("keys[3]") but without a map key
// ("params[<key>]" is "params"), which is the client's own text.
func fieldName(f string) string {
	name, key, ok := strings.Cut(f, "[")
	if !ok {
		return f
	}
	key = strings.TrimSuffix(key, "]")
	if _, err := strconv.Atoi(key); err == nil {
		return f
	}
	return name
}

func describe(fe validator.FieldError) string {
	msg, _ := describeTag(fe.Tag(), fe.Param(), fe.Kind())
	return msg
}

// describeTag says what a failed validation tag requires, for a field of
// kind k; ok is false for a tag without a message of its own.
func describeTag(tag, param string, k reflect.Kind) (msg string, ok bool) {
	switch tag {
	case "required":
		return "is required", true
	case "min", "gte":
		return "must " + amount("at least", param, k), true
	case "max", "lte":
		return "must " + amount("at most", param, k), true
	case "maxbytes":
		return "must be at most " + param + " bytes", true
	case "utf8":
		return "must be valid UTF-8", true
	case "nocontrol":
		return "must not contain control characters", true
	case "text":
		return "must not contain control characters other than tab and newline, or bidirectional overrides and isolates", true
	case "printascii":
		return "must contain only printable ASCII characters", true
	case "alphanum":
		return "must contain only ASCII letters and digits", true
	case "excludesall":
		return "must not contain " + charList(param), true
	case "startswith":
		return "must start with " + strconv.Quote(param), true
	case "httpurl":
		return "must be an absolute http or https URL", true
	case "userid":
		return "must not start with " + strconv.Quote(authz.ServiceIDPrefix) + ", which is reserved for service principals", true
	case "oneof":
		return "must be one of: " + strings.Join(strings.Fields(param), ", "), true
	default:
		return "is invalid", false
	}
}

// amount phrases a bound for a field of kind k: "be at most 64
// characters", "have at least 1 item", "be at least 0".
func amount(bound, n string, k reflect.Kind) string {
	unit := ""
	switch k {
	case reflect.String:
		unit = " characters"
	case reflect.Slice, reflect.Array:
		unit = " items"
	case reflect.Map:
		unit = " entries"
	default:
		return "be " + bound + " " + n
	}
	if n == "1" {
		unit = strings.TrimSuffix(unit, "s")
		if unit == " entrie" {
			unit = " entry"
		}
	}
	if k == reflect.String {
		return "be " + bound + " " + n + unit
	}
	return "have " + bound + " " + n + unit
}

// charList names the characters of an excludesall parameter, e.g. `"/" or
// spaces`.
func charList(chars string) string {
	var names []string
	for _, r := range chars {
		switch {
		case r == ' ':
			names = append(names, "spaces")
		default:
			names = append(names, strconv.QuoteRune(r))
		}
	}
	return strings.Join(names, " or ")
}

// IsText reports whether s is acceptable free text (the "text" rule):
// valid UTF-8 without control characters other than tab and newline,
// bidirectional embeddings, overrides or isolates (U+202A–U+202E,
// U+2066–U+2069), line or paragraph separators, the byte order mark,
// deprecated format characters (U+206A–U+206F), interlinear annotation
// characters or noncharacters U+FFFE/U+FFFF.
func IsText(s string) bool {
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return false // invalid UTF-8; a literal U+FFFD is text
			}
		case r == '\t', r == '\n':
		case unicode.IsControl(r):
			return false
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return false
		case r == 0x2028, r == 0x2029, r == 0xfeff, r >= 0x206a && r <= 0x206f,
			r >= 0xfff9 && r <= 0xfffb, r == 0xfffe, r == 0xffff:
			return false
		}
	}
	return true
}
