package mesh

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"
)

// fieldWalker checks a JSON document against the Go type it will be
// decoded into, in one streaming pass over its tokens. It reports unknown
// fields, fields written twice, wrong kinds and bad durations with their
// full path. encoding/json alone reports unknown fields without a path,
// matches field names without regard to case, and keeps the last of two
// equal keys.
type fieldWalker struct {
	dec *json.Decoder
	fe  *fieldErrors
}

// walkFields checks js, which must be valid JSON, against t. Problems with
// the document go to fe; the error return is for malformed JSON only.
func walkFields(fe *fieldErrors, js []byte, t reflect.Type) error {
	w := &fieldWalker{dec: json.NewDecoder(bytes.NewReader(js)), fe: fe}
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		fe.add("", "document must be a mapping of fields, not %s", tokenKind(tok))
		return nil
	}
	if err := w.object("", t); err != nil {
		return err
	}
	if _, err := w.dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the document")
	}
	return nil
}

// value reads one value and checks it against t.
func (w *fieldWalker) value(path string, t reflect.Type) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		// null leaves the field at its zero value.
		return nil
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		w.duration(path, tok)
		return w.skipRest(tok)
	case t.Kind() == reflect.Struct:
		if !isDelim(tok, '{') {
			w.fe.add(path, "expected a mapping of fields, found %s", tokenKind(tok))
			return w.skipRest(tok)
		}
		return w.object(path, t)
	case t.Kind() == reflect.Map:
		if !isDelim(tok, '{') {
			w.fe.add(path, "expected a mapping, found %s", tokenKind(tok))
			return w.skipRest(tok)
		}
		return w.mapping(path, t.Elem())
	case t.Kind() == reflect.Slice:
		if !isDelim(tok, '[') {
			w.fe.add(path, "expected a list, found %s", tokenKind(tok))
			return w.skipRest(tok)
		}
		return w.list(path, t.Elem())
	}
	w.scalar(path, t, tok)
	return w.skipRest(tok)
}

// object checks the fields of a struct; the opening brace was read.
func (w *fieldWalker) object(path string, t reflect.Type) error {
	fields := jsonFields(t)
	seen := make(map[string]bool, len(fields))
	for w.dec.More() {
		key, err := w.key()
		if err != nil {
			return err
		}
		field := join(path, key)
		if seen[key] {
			w.fe.add(field, "field written twice; write it once")
		}
		seen[key] = true
		ft, known := fields[key]
		if !known {
			w.fe.add(field, "unknown field; known fields are %s", knownFields(t))
			if err := w.skipValue(); err != nil {
				return err
			}
			continue
		}
		if err := w.value(field, ft); err != nil {
			return err
		}
	}
	_, err := w.dec.Token()
	return err
}

// mapping checks the values of a map; the opening brace was read.
func (w *fieldWalker) mapping(path string, elem reflect.Type) error {
	seen := make(map[string]bool)
	for w.dec.More() {
		key, err := w.key()
		if err != nil {
			return err
		}
		if seen[key] {
			w.fe.add(join(path, key), "key written twice; write it once")
		}
		seen[key] = true
		if err := w.value(join(path, key), elem); err != nil {
			return err
		}
	}
	_, err := w.dec.Token()
	return err
}

// list checks the items of a slice; the opening bracket was read.
func (w *fieldWalker) list(path string, elem reflect.Type) error {
	for i := 0; w.dec.More(); i++ {
		if err := w.value(fmt.Sprintf("%s[%d]", path, i), elem); err != nil {
			return err
		}
	}
	_, err := w.dec.Token()
	return err
}

func (w *fieldWalker) key() (string, error) {
	tok, err := w.dec.Token()
	if err != nil {
		return "", err
	}
	key, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("expected an object key, found %v", tok)
	}
	return key, nil
}

func (w *fieldWalker) duration(path string, tok json.Token) {
	s, ok := tok.(string)
	if !ok {
		w.fe.add(path, "expected a duration string with a unit such as \"5s\", found %s", tokenKind(tok))
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		w.fe.add(path, "invalid duration %q: write a number with a unit, such as \"250ms\" or \"5s\"", s)
	} else if d < 0 {
		w.fe.add(path, "invalid duration %q: must not be negative", s)
	}
}

func (w *fieldWalker) scalar(path string, t reflect.Type, tok json.Token) {
	switch t.Kind() {
	case reflect.String:
		if _, ok := tok.(string); !ok {
			w.fe.add(path, "expected a string, found %s", tokenKind(tok))
		}
	case reflect.Bool:
		if _, ok := tok.(bool); !ok {
			w.fe.add(path, "expected true or false, found %s", tokenKind(tok))
		}
	case reflect.Uint32:
		n, ok := tok.(float64)
		if !ok || n != float64(uint32(n)) {
			w.fe.add(path, "expected a whole number from 0 to 4294967295, found %s", describeToken(tok))
		}
	}
}

// skipRest consumes the rest of a value whose first token was tok.
func (w *fieldWalker) skipRest(tok json.Token) error {
	if !isDelim(tok, '{') && !isDelim(tok, '[') {
		return nil
	}
	for depth := 1; depth > 0; {
		t, err := w.dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

func (w *fieldWalker) skipValue() error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	return w.skipRest(tok)
}

func isDelim(tok json.Token, d json.Delim) bool {
	got, ok := tok.(json.Delim)
	return ok && got == d
}

func tokenKind(tok json.Token) string {
	switch tok {
	case json.Delim('{'):
		return "a mapping"
	case json.Delim('['):
		return "a list"
	}
	return jsonKind(tok)
}

func describeToken(tok json.Token) string {
	if n, ok := tok.(float64); ok {
		return fmt.Sprintf("%v", n)
	}
	return tokenKind(tok)
}
