// Package config loads a program's settings from flags, LINLI_* environment
// variables and a YAML file, in that order of precedence, over defaults that
// work on one machine.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error names the setting that is wrong. Mains print it as one line and
// exit 2.
type Error struct {
	Setting string
	Where   string // "flag", "env LINLI_X", "file.yaml:12" or "" (validation)
	Err     error
}

func (e *Error) Error() string {
	// One line, always: YAML errors span several.
	msg := strings.Join(strings.Fields(e.Err.Error()), " ")
	if e.Where == "" {
		return fmt.Sprintf("bad setting %q: %s", e.Setting, msg)
	}
	return fmt.Sprintf("bad setting %q (%s): %s", e.Setting, e.Where, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error for a setting that failed validation.
func Errorf(setting, format string, args ...any) error {
	return &Error{Setting: setting, Err: fmt.Errorf(format, args...)}
}

// ErrHelp is returned by Load when -h or --help was asked for; the usage has
// been written to the Set's output.
var ErrHelp = flag.ErrHelp

type setting struct {
	name  string
	usage string
	def   string
	set   func(string) error
}

// Set is a program's settings and the sections of its config file.
type Set struct {
	program  string
	fs       *flag.FlagSet
	settings map[string]*setting
	order    []string
	sections map[string]any
	config   string
	out      io.Writer
	set      map[string]bool // settings given by file, env or flag
}

// New starts an empty set for program (used in messages).
func New(program string, usageOut io.Writer) *Set {
	s := &Set{
		program:  program,
		fs:       flag.NewFlagSet(program, flag.ContinueOnError),
		settings: map[string]*setting{},
		sections: map[string]any{},
		out:      usageOut,
		set:      map[string]bool{},
	}
	s.fs.SetOutput(io.Discard)
	s.fs.StringVar(&s.config, "config", "", "YAML config file (env LINLI_CONFIG)")
	return s
}

func (s *Set) add(name, def, usage string, set func(string) error) {
	s.settings[name] = &setting{name: name, usage: usage, def: def, set: func(v string) error {
		if err := set(v); err != nil {
			return err
		}
		s.set[name] = true
		return nil
	}}
	s.order = append(s.order, name)
	// Flags go through a string sink: values are applied in precedence
	// order by Load, not as the flag package parses them.
	s.fs.String(name, def, usage)
}

// boolSink lets a bool setting be given as a bare --name (true).
type boolSink struct{ v string }

func (b *boolSink) String() string     { return b.v }
func (b *boolSink) Set(v string) error { b.v = v; return nil }
func (b *boolSink) IsBoolFlag() bool   { return true }

// String registers a string setting.
func (s *Set) String(p *string, name, def, usage string) {
	*p = def
	s.add(name, def, usage, func(v string) error { *p = v; return nil })
}

// Int registers an integer setting.
func (s *Set) Int(p *int, name string, def int, usage string) {
	*p = def
	s.add(name, strconv.Itoa(def), usage, func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		*p = n
		return nil
	})
}

// Float registers a floating-point setting.
func (s *Set) Float(p *float64, name string, def float64, usage string) {
	*p = def
	s.add(name, strconv.FormatFloat(def, 'g', -1, 64), usage, func(v string) error {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		*p = f
		return nil
	})
}

// Bool registers a boolean setting.
func (s *Set) Bool(p *bool, name string, def bool, usage string) {
	*p = def
	set := func(v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*p = b
		return nil
	}
	s.settings[name] = &setting{name: name, usage: usage, def: strconv.FormatBool(def), set: func(v string) error {
		if err := set(v); err != nil {
			return err
		}
		s.set[name] = true
		return nil
	}}
	s.order = append(s.order, name)
	s.fs.Var(&boolSink{v: strconv.FormatBool(def)}, name, usage)
}

// Duration registers a duration setting ("90s", "5m").
func (s *Set) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	s.add(name, def.String(), usage, func(v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			return fmt.Errorf("%q is not a duration such as 30s or 5m", v)
		}
		*p = d
		return nil
	})
}

// List registers a comma-separated list setting.
func (s *Set) List(p *[]string, name string, def []string, usage string) {
	*p = def
	s.add(name, strings.Join(def, ","), usage, func(v string) error {
		var out []string
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
		*p = out
		return nil
	})
}

// Section registers a structured part of the config file (a YAML mapping or
// list under key), decoded strictly into target. Sections have no flag or
// environment form.
func (s *Set) Section(key string, target any) { s.sections[key] = target }

// IsSet reports whether a setting was given (file, environment or flag)
// rather than left at its default.
func (s *Set) IsSet(name string) bool { return s.set[name] }

// ConfigFile is the config file Load used, if any.
func (s *Set) ConfigFile() string { return s.config }

// Load applies defaults, then the config file (--config or LINLI_CONFIG),
// then LINLI_* variables from env, then flags in args.
func (s *Set) Load(args, env []string) error {
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			s.usage()
			return ErrHelp
		}
		return &Error{Setting: flagName(err), Where: "flag", Err: errors.New(trimFlagErr(err))}
	}
	if s.fs.NArg() > 0 {
		return &Error{Setting: "args", Where: "flag", Err: fmt.Errorf("unexpected argument %q", s.fs.Arg(0))}
	}
	envs := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "LINLI_") {
			envs[k] = v
		}
	}
	flagged := map[string]string{}
	s.fs.Visit(func(f *flag.Flag) { flagged[f.Name] = f.Value.String() })
	if _, ok := flagged["config"]; !ok {
		s.config = envs["LINLI_CONFIG"]
	}
	if s.config != "" {
		if err := s.loadFile(s.config); err != nil {
			return err
		}
	}
	for _, name := range s.order {
		key := EnvName(name)
		if v, ok := envs[key]; ok {
			if err := s.settings[name].set(v); err != nil {
				return &Error{Setting: name, Where: "env " + key, Err: err}
			}
		}
	}
	for _, name := range s.order {
		if v, ok := flagged[name]; ok {
			if err := s.settings[name].set(v); err != nil {
				return &Error{Setting: name, Where: "flag --" + name, Err: err}
			}
		}
	}
	return nil
}

// LookupEnv is the value of name in env (KEY=value entries, as
// os.Environ gives them), and whether it is there.
func LookupEnv(env []string, name string) (string, bool) {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// EnvName is the environment variable of a setting: LINLI_ and the name in
// upper case with '-' as '_'.
func EnvName(name string) string {
	return "LINLI_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (s *Set) loadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Error{Setting: "config", Where: "flag --config", Err: err}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return &Error{Setting: "config", Where: path, Err: fmt.Errorf("not valid YAML: %w", err)}
	}
	if len(root.Content) == 0 {
		return nil // an empty file sets nothing
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return &Error{Setting: "config", Where: fmt.Sprintf("%s:%d", path, doc.Line), Err: errors.New("want a mapping of setting: value")}
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		where := fmt.Sprintf("%s:%d", path, k.Line)
		if k.Kind != yaml.ScalarNode || strings.TrimSpace(k.Value) == "" {
			return &Error{Setting: "config", Where: where, Err: errors.New("a setting name must be a plain, non-empty word")}
		}
		name := strings.ReplaceAll(k.Value, "_", "-")
		if st, ok := s.settings[name]; ok {
			val, err := scalar(v)
			if err == nil {
				err = st.set(val)
			}
			if err != nil {
				return &Error{Setting: name, Where: where, Err: err}
			}
			continue
		}
		target, ok := s.sections[k.Value]
		if !ok {
			return &Error{Setting: k.Value, Where: where, Err: errors.New("unknown setting")}
		}
		// Node.Decode cannot refuse unknown fields, so re-encode the node and
		// decode it strictly: a typo in a door or pin name must not pass.
		raw, err := yaml.Marshal(v)
		if err == nil {
			dec := yaml.NewDecoder(bytes.NewReader(raw))
			dec.KnownFields(true)
			err = dec.Decode(target)
		}
		if err != nil {
			return &Error{Setting: k.Value, Where: where, Err: err}
		}
	}
	return nil
}

func scalar(n *yaml.Node) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value, nil
	case yaml.SequenceNode:
		parts := make([]string, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return "", errors.New("want a list of plain values")
			}
			parts = append(parts, c.Value)
		}
		return strings.Join(parts, ","), nil
	}
	return "", errors.New("want a plain value")
}

func (s *Set) usage() {
	fmt.Fprintf(s.out, "Usage of %s:\n  --config FILE\n\tYAML config file (env LINLI_CONFIG)\n", s.program)
	names := append([]string(nil), s.order...)
	sort.Strings(names)
	for _, n := range names {
		st := s.settings[n]
		fmt.Fprintf(s.out, "  --%s (env %s, default %q)\n\t%s\n", n, EnvName(n), st.def, st.usage)
	}
}

// flagName picks the flag out of the flag package's errors, which end in
// ": -name" ("flag provided but not defined: -x", "flag needs an argument: -x").
func flagName(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": -"); i >= 0 {
		if name := strings.TrimLeft(msg[i+2:], "-"); name != "" {
			return name
		}
	}
	return "flags"
}

func trimFlagErr(err error) string { return strings.TrimSpace(err.Error()) }
