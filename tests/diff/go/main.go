// Go scenarios of sluice's differential suite (tests/diff): franz-go (kgo, kadm) and IBM/sarama.
// Same transcript conventions as tests/diff/common.py.
// Usage: diffgo BOOTSTRAP OUTDIR SCENARIO...   (BOOTSTRAP may list brokers, comma-separated) prints "RESULT id status seconds" per scenario.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const TS0 = int64(1_000_000_000_000)

type T struct {
	sid string
	f   *os.File
}

type checkFailed struct{ what string }

func (c checkFailed) Error() string { return c.what }

// M is one transcript line's fields.
type M = map[string]any

func (t *T) rec(kind string, fields M) {
	line := M{"kind": kind}
	for k, v := range fields {
		line[k] = v
	}
	b, _ := json.Marshal(line)
	t.f.Write(append(b, '\n'))
}

func (t *T) check(cond bool, what string) {
	if !cond {
		t.rec("check-failed", M{"what": what})
		panic(checkFailed{what})
	}
}

func (t *T) topic(suffix string) string {
	base := strings.NewReplacer(".", "-", "_", "-").Replace(t.sid)
	if suffix == "" {
		return base
	}
	return base + "-" + suffix
}

func merge(a M, b M) M {
	for k, v := range b {
		a[k] = v
	}
	return a
}

func ctx(seconds int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
}

var scenarios = map[string]func(t *T, bs string){}

func scenario(name string, fn func(t *T, bs string)) { scenarios["go."+name] = fn }

// seeds splits BOOTSTRAP ("host:port" or, for a cluster target, "h1:p1,h2:p2,h3:p3"): neither
// franz-go's SeedBrokers nor sarama splits a comma-separated string itself.
func seeds(bs string) []string { return strings.Split(bs, ",") }

func sortedKeys[V any](m map[int32]V) []int32 {
	ks := make([]int32, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--list" {
		names := make([]string, 0, len(scenarios))
		for n := range scenarios {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Println(n)
		}
		return
	}
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: diffgo BOOTSTRAP OUTDIR SCENARIO...")
		os.Exit(2)
	}
	bs, outdir := os.Args[1], os.Args[2]
	for _, sid := range os.Args[3:] {
		t0 := time.Now()
		status := run(sid, bs, outdir)
		fmt.Printf("RESULT %s %s %.1f\n", sid, status, time.Since(t0).Seconds())
	}
}

func run(sid, bs, outdir string) (status string) {
	fn, ok := scenarios[sid]
	if !ok {
		return "unknown"
	}
	f, err := os.Create(filepath.Join(outdir, sid+".jsonl"))
	if err != nil {
		return "failed"
	}
	defer f.Close()
	t := &T{sid: sid, f: f}
	defer func() {
		if r := recover(); r != nil {
			var cf checkFailed
			if e, ok := r.(error); ok && errors.As(e, &cf) {
				status = "failed"
				return
			}
			t.rec("exception", M{"type": fmt.Sprintf("%T", r), "msg": fmt.Sprint(r)})
			fmt.Fprintf(os.Stderr, "%s: panic: %v\n", sid, r)
			status = "failed"
		}
	}()
	fn(t, bs)
	t.rec("end", nil)
	return "ok"
}

func contextDeadline() error { return context.DeadlineExceeded }
