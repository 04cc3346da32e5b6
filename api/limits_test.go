package api

import (
	"fmt"
	"strings"
	"testing"
)

func names(n int, f func(i int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func validationErrors(t *testing.T, o Object) *ValidationError {
	t.Helper()
	err := Validate(o)
	ve, ok := err.(*ValidationError)
	if !ok {
		t.Fatalf("Validate: %v, want a *ValidationError", err)
	}
	return ve
}

func TestListLengthLimit(t *testing.T) {
	ok := &EPolicy{Metadata: ObjectMeta{Name: "p"}, AllowedServers: names(MaxListLen, func(i int) string { return fmt.Sprintf("s%d", i) })}
	if err := Validate(ok); err != nil {
		t.Fatalf("%d entries: %v", MaxListLen, err)
	}
	for _, o := range []Object{
		&EPolicy{Metadata: ObjectMeta{Name: "p"}, AllowedServers: names(100000, func(i int) string { return fmt.Sprintf("s%d", i) })},
		&EPolicy{Metadata: ObjectMeta{Name: "p"}, AllowedSites: names(MaxListLen+1, func(i int) string { return fmt.Sprintf("s%d", i) })},
		&ServiceExpose{Metadata: ObjectMeta{Name: "x"}, EServiceName: "web", ESites: names(MaxListLen+1, func(i int) string { return "a" })},
		&ServiceExpose{Metadata: ObjectMeta{Name: "x"}, EServiceName: "web", EPolicys: names(MaxListLen+1, func(i int) string { return fmt.Sprintf("p%d", i) })},
	} {
		ve := validationErrors(t, o)
		if len(ve.Errors) != 1 || !strings.Contains(ve.Errors[0].Message, fmt.Sprintf("at most %d are allowed", MaxListLen)) {
			t.Errorf("%s: %v", Key(o), ve)
		}
	}
}

func TestDuplicateNamesRefused(t *testing.T) {
	se := &ServiceExpose{Metadata: ObjectMeta{Name: "x"}, EServiceName: "web", ESites: []string{"a", "b", "A", "c", "b"}}
	ve := validationErrors(t, se)
	want := []FieldError{
		{Object: "ServiceExpose/x", Field: "eSites[2]", Message: `"A" is a duplicate of eSites[0]`},
		{Object: "ServiceExpose/x", Field: "eSites[4]", Message: `"b" is a duplicate of eSites[1]`},
	}
	if fmt.Sprint(ve.Errors) != fmt.Sprint(want) {
		t.Errorf("got %v\nwant %v", ve.Errors, want)
	}
	p := &EPolicy{Metadata: ObjectMeta{Name: "p"}, AllowedServers: []string{"s", "s"}, AllowedSites: []string{"a", "a"}}
	if ve := validationErrors(t, p); len(ve.Errors) != 2 || ve.Errors[1].Field != "allowedSites[1]" {
		t.Errorf("EPolicy: %v", ve)
	}
}

func TestLabelLimits(t *testing.T) {
	many := map[string]string{}
	for i := 0; i <= MaxLabels; i++ {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	for name, meta := range map[string]ObjectMeta{
		"labels":      {Name: "s", Labels: many},
		"annotations": {Name: "s", Annotations: many},
		"long key":    {Name: "s", Labels: map[string]string{strings.Repeat("k", MaxLabelKeyLen+1): "v"}},
		"long value":  {Name: "s", Annotations: map[string]string{"k": strings.Repeat("v", MaxLabelValueLen+1)}},
		"empty key":   {Name: "s", Labels: map[string]string{"": "v"}},
	} {
		ve := validationErrors(t, &ESite{Metadata: meta})
		if len(ve.Errors) != 1 {
			t.Errorf("%s: %v", name, ve)
		}
	}
}

// An error about many problems lists MaxReportedErrors of them and counts the rest.
func TestValidationErrorBounded(t *testing.T) {
	var objs []Object
	for i := 0; i < 100; i++ {
		objs = append(objs, &EService{Metadata: ObjectMeta{Name: fmt.Sprintf("s%d", i)}}) // four problems each
	}
	err := ValidateAll(objs)
	ve, ok := err.(*ValidationError)
	if !ok {
		t.Fatalf("%v", err)
	}
	if len(ve.Errors) != MaxReportedErrors || ve.Omitted != 400-MaxReportedErrors {
		t.Errorf("%d listed, %d omitted; want %d and %d", len(ve.Errors), ve.Omitted, MaxReportedErrors, 400-MaxReportedErrors)
	}
	if !strings.HasSuffix(err.Error(), fmt.Sprintf("; and %d more problems", 400-MaxReportedErrors)) || len(err.Error()) > 4096 {
		t.Errorf("message (%d bytes) ends %q", len(err.Error()), err.Error()[max(0, len(err.Error())-60):])
	}
}
