package server

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/go-playground/validator/v10"
)

// fileRules checks the rules of single fields of the config file, written
// as `rule` tags on its structs (FileConfig and the sections in it). The
// tag key is not `validate`: these messages are for operators
// (describeRule), not the client messages of edge.Validator.
// Rules that relate fields to each other (an authenticator's fields by its
// type, tls.cert with tls.key, sessions.idle within sessions.ttl, unique
// service names) are in FileConfig.validate.
var fileRules = newFileRules()

func newFileRules() *validator.Validate {
	v := validator.New()
	v.SetTagName("rule")
	// Errors name the YAML path, e.g. auth.chain[0].reload_interval.
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			return f.Name
		}
		return name
	})
	for tag, ok := range map[string]func(string) bool{
		"ipprefix":    func(s string) bool { _, err := parsePrefix(s); return err == nil },
		"origin":      isOrigin,
		"servicename": serviceName.MatchString,
	} {
		if err := v.RegisterValidation(tag, func(fl validator.FieldLevel) bool { return ok(fl.Field().String()) }); err != nil {
			panic(err)
		}
	}
	return v
}

// tagErrors returns one error per field of fc that breaks its rule
// tag, each naming the field by its YAML path.
func (fc *FileConfig) tagErrors() []error {
	err := fileRules.Struct(fc)
	var fields validator.ValidationErrors
	if !errors.As(err, &fields) {
		if err != nil {
			return []error{fmt.Errorf("config: %w", err)}
		}
		return nil
	}
	out := make([]error, 0, len(fields))
	for _, fe := range fields {
		_, path, _ := strings.Cut(fe.Namespace(), ".") // drop "FileConfig."
		out = append(out, fmt.Errorf("%s: %s", path, describeRule(fe)))
	}
	return out
}

// describeRule says in words what a field's value breaks.
func describeRule(fe validator.FieldError) string {
	switch fe.Tag() {
	case "gte", "min":
		if fe.Param() == "0" {
			return "must not be negative"
		}
		return "must be at least " + fe.Param()
	case "lte", "max":
		return "must be at most " + fe.Param()
	case "oneof":
		return fmt.Sprintf("%q is not one of %s", fe.Value(), strings.ReplaceAll(fe.Param(), " ", ", "))
	case "ipprefix":
		return fmt.Sprintf("%q is not an IP address or CIDR prefix", fe.Value())
	case "origin":
		return fmt.Sprintf("%q is not \"*\" or an origin like https://app.example.com", fe.Value())
	case "servicename":
		return "required: lowercase letters, digits, '.', '_' or '-', at most 64"
	}
	return "breaks the rule " + fe.Tag()
}
