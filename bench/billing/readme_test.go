package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestREADME reruns every `go run ./bench/billing …` command in the
// README's billing section and checks that the tables printed after it are
// the command's output, so a change to the model that moves a published
// figure fails here until the README is updated with it.
func TestREADME(t *testing.T) {
	const heading, command = "## Stable signed URLs, and what they save", "go run ./bench/billing"
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no %q section", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")

	// A command is a line of a fenced block; its tables are the lines
	// starting with | up to the next fenced block.
	type example struct {
		args  string
		table []string
	}
	var examples []*example
	var cur *example
	inFence := false
	for line := range strings.Lines(section) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "```"):
			inFence = !inFence
			if inFence {
				cur = nil
			}
		case inFence && strings.HasPrefix(line, command):
			args, _, _ := strings.Cut(strings.TrimPrefix(line, command), "#")
			cur = &example{args: strings.TrimSpace(args)}
			examples = append(examples, cur)
		case !inFence && cur != nil && strings.HasPrefix(line, "|"):
			cur.table = append(cur.table, line)
		}
	}
	if len(examples) < 3 {
		t.Fatalf("found %d commands in the README's billing section, want at least 3", len(examples))
	}

	for _, ex := range examples {
		t.Run(ex.args, func(t *testing.T) {
			t.Parallel()
			if len(ex.table) == 0 {
				t.Fatal("no table follows the command")
			}
			var out bytes.Buffer
			if err := run(strings.Fields(ex.args), &out); err != nil {
				t.Fatal(err)
			}
			var got []string
			for line := range strings.Lines(out.String()) {
				if strings.HasPrefix(line, "|") {
					got = append(got, strings.TrimRight(line, "\n"))
				}
			}
			if strings.Join(got, "\n") != strings.Join(ex.table, "\n") {
				t.Errorf("README:\n%s\n\n%s %s prints:\n%s", strings.Join(ex.table, "\n"), command, ex.args, out.String())
			}
		})
	}
}
