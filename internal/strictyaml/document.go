package strictyaml

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Document parses data as one YAML document and returns its top node.
// It returns nil after adding a syntax error or a second document to l,
// and nil with nothing added when the file holds no document at all:
// what an empty file should have held is for the caller to say.
func (l *List) Document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			l.syntax(data, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		l.syntax(data, err)
		return nil
	default:
		l.Addf(next.Line, "a second YAML document: the file is one document, so remove the --- and merge them")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

// syntaxLine picks the line out of the YAML package's messages, which
// carry it only in their text.
var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

var anchorName = regexp.MustCompile(`anchor '[^']*'`)

// parserProblems are the messages of the YAML package's parser (not its
// scanner): it numbers their lines from 0, at the start of the block it was
// reading, where its scanner numbers from 1.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// SyntaxError is a YAML syntax error, reworded to fit FILE:LINE.
type SyntaxError struct {
	msg string
	err error
}

func (e *SyntaxError) Error() string { return e.msg }

// Unwrap returns the YAML package's error.
func (e *SyntaxError) Unwrap() error { return e.err }

// syntax records a syntax error with what usually causes it. The YAML
// package's message names characters, never the text around them, so it
// carries no value (no secret) from the file.
func (l *List) syntax(data []byte, err error) {
	line, msg := 0, strings.TrimPrefix(err.Error(), "yaml: ")
	if m := syntaxLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if parserProblems[msg] {
			line++ // the YAML package gives these 0-based, scanner errors 1-based
		}
		// At the end of the file, the line after its last newline.
		last := bytes.Count(data, []byte("\n"))
		if !bytes.HasSuffix(data, []byte("\n")) {
			last++
		}
		line = min(line, max(last, 1))
	}
	// The YAML package quotes anchor names, which are the file's text.
	msg = anchorName.ReplaceAllString(msg, "an anchor")
	hint := "check the indentation, the colons and the quotes on this line and the one before"
	if hasTab(data, line) {
		hint = "YAML indents with spaces: replace the tabs"
	}
	l.Add(line, &SyntaxError{msg: "not valid YAML: " + msg + "; " + hint, err: err})
}

// hasTab reports whether the line (1-based), or the one before (YAML often
// reports a tab where the next token should start), begins with a tab.
func hasTab(data []byte, line int) bool {
	lines := bytes.Split(data, []byte("\n"))
	for _, i := range []int{line - 1, line - 2} {
		if i >= 0 && i < len(lines) {
			indent := lines[i][:len(lines[i])-len(bytes.TrimLeft(lines[i], " \t"))]
			if bytes.ContainsRune(indent, '\t') {
				return true
			}
		}
	}
	return false
}
