package main

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoErr is what a franz-go user observes of an error: the Kafka error name and code when the
// broker sent one, else the error's Go type. (Message text is dropped by normalize.py.)
func kgoErr(err error) M {
	if err == nil {
		return M{"error": nil}
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return M{"error": ke.Message, "code": ke.Code}
	}
	return M{"error": fmt.Sprintf("%T", err), "msg": err.Error()}
}

func kclient(bs string, opts ...kgo.Opt) *kgo.Client {
	// No RecordDeliveryTimeout: franz-go measures it from each record's own Timestamp, and the
	// scenarios use explicit timestamps from 2001; every produce is bounded by its context instead.
	base := []kgo.Opt{kgo.SeedBrokers(seeds(bs)...), kgo.RequestTimeoutOverhead(10 * time.Second),
		kgo.RetryTimeout(15 * time.Second)}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		panic(err)
	}
	return cl
}

func kcreate(t *T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	c, cancel := ctx(20)
	defer cancel()
	r, err := adm.CreateTopic(c, partitions, 1, configs, topic)
	if err == nil {
		err = r.Err
	}
	if err != nil {
		panic(err)
	}
	kwait(adm, topic, int(partitions))
}

func kwait(adm *kadm.Client, topic string, partitions int) {
	end := time.Now().Add(15 * time.Second)
	for time.Now().Before(end) {
		c, cancel := ctx(10)
		td, err := adm.ListTopics(c, topic)
		cancel()
		if err == nil {
			if d, ok := td[topic]; ok && d.Err == nil && len(d.Partitions) == partitions {
				ready := true
				for _, p := range d.Partitions {
					if p.Leader < 0 {
						ready = false
					}
				}
				if ready {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	panic("topic not ready: " + topic)
}

func recordM(r *kgo.Record) M {
	hs := [][]string{}
	for _, h := range r.Headers {
		hs = append(hs, []string{h.Key, string(h.Value)})
	}
	var key any
	if r.Key != nil {
		key = string(r.Key)
	}
	var val any
	if r.Value != nil {
		val = string(r.Value)
	}
	return M{"partition": r.Partition, "offset": r.Offset, "key": key, "value": val,
		"timestamp": r.Timestamp.UnixMilli(), "headers": hs, "leader_epoch": r.LeaderEpoch}
}

func kconsume(bs, topic string, partitions int32, expect int) ([]*kgo.Record, []M) {
	parts := map[int32]kgo.Offset{}
	for p := int32(0); p < partitions; p++ {
		parts[p] = kgo.NewOffset().AtStart()
	}
	cl := kclient(bs, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	defer cl.Close()
	var out []*kgo.Record
	var errs []M
	end := time.Now().Add(20 * time.Second)
	for len(out) < expect && time.Now().Before(end) {
		c, cancel := ctx(2)
		fs := cl.PollFetches(c)
		cancel()
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, errDeadline) {
				errs = append(errs, kgoErr(e.Err))
			}
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
		if len(errs) > 0 {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, errs
}

func klistOffsets(t *T, adm *kadm.Client, topic, label string, f func() (kadm.ListedOffsets, error)) {
	lo, err := f()
	if err != nil {
		t.rec("list-offsets", merge(M{"spec": label}, kgoErr(err)))
		return
	}
	rows := []M{}
	lo.Each(func(o kadm.ListedOffset) {
		rows = append(rows, merge(M{"partition": o.Partition, "offset": o.Offset, "timestamp": o.Timestamp,
			"leader_epoch": o.LeaderEpoch}, kgoErr(o.Err)))
	})
	sort.Slice(rows, func(i, j int) bool { return rows[i]["partition"].(int32) < rows[j]["partition"].(int32) })
	t.rec("list-offsets", M{"spec": label, "partitions": rows})
}

func init() {
	scenario("franz_produce_consume_keyed", func(t *T, bs string) {
		topic := t.topic("")
		// idempotent by default, acks=all; keys hashed with murmur2 as the Java client does
		cl := kclient(bs, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
		defer cl.Close()
		adm := kadm.NewClient(cl)
		kcreate(t, adm, topic, 3, nil)
		var recs []*kgo.Record
		for i := 0; i < 30; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("key-%d", i%7)),
				Value: []byte(fmt.Sprintf("value-%d", i)), Timestamp: time.UnixMilli(TS0 + int64(i)*1000),
				Headers: []kgo.RecordHeader{{Key: "h-index", Value: []byte(fmt.Sprint(i))}, {Key: "h-dup", Value: []byte("a")}, {Key: "h-dup", Value: []byte("b")}}})
		}
		c, cancel := ctx(30)
		res := cl.ProduceSync(c, recs...)
		cancel()
		errOf := map[*kgo.Record]error{} // ProduceSync's results come in completion order, not input order
		for _, r := range res {
			errOf[r.Record] = r.Err
		}
		for i, r := range recs {
			if err := errOf[r]; err != nil {
				t.rec("delivery", merge(M{"i": i}, kgoErr(err)))
			} else {
				t.rec("delivery", M{"i": i, "partition": r.Partition, "offset": r.Offset})
			}
		}
		got, errs := kconsume(bs, topic, 3, 30)
		for _, e := range errs {
			t.rec("consume-error", e)
		}
		for _, r := range got {
			t.rec("record", recordM(r))
		}
		t.check(len(got) == 30, "30 records back")
		klistOffsets(t, adm, topic, "end", func() (kadm.ListedOffsets, error) {
			c, cancel := ctx(15)
			defer cancel()
			return adm.ListEndOffsets(c, topic)
		})
	})

	for _, codec := range []string{"gzip", "snappy", "lz4", "zstd"} {
		codec := codec
		scenario("franz_codec_"+codec, func(t *T, bs string) {
			topic := t.topic("")
			var cc kgo.CompressionCodec
			switch codec {
			case "gzip":
				cc = kgo.GzipCompression()
			case "snappy":
				cc = kgo.SnappyCompression()
			case "lz4":
				cc = kgo.Lz4Compression()
			case "zstd":
				cc = kgo.ZstdCompression()
			}
			cl := kclient(bs, kgo.ProducerBatchCompression(cc), kgo.ProducerLinger(50*time.Millisecond))
			defer cl.Close()
			adm := kadm.NewClient(cl)
			kcreate(t, adm, topic, 1, nil)
			var recs []*kgo.Record
			for i := 0; i < 300; i++ {
				recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("%s-%d-%0*d", codec, i, i%40, 0)),
					Timestamp: time.UnixMilli(TS0 + int64(i))})
			}
			c, cancel := ctx(30)
			err := cl.ProduceSync(c, recs...).FirstErr()
			cancel()
			t.rec("produce", kgoErr(err))
			got, errs := kconsume(bs, topic, 1, 300)
			ok := len(got) == 300
			for i := 0; ok && i < 300; i++ {
				ok = string(got[i].Value) == string(recs[i].Value) && got[i].Offset == int64(i)
			}
			t.rec("consumed", M{"count": len(got), "values_and_offsets_match": ok, "errors": errs})
			t.check(ok, "values round-trip")
		})
	}

	scenario("franz_admin", func(t *T, bs string) {
		topic := t.topic("")
		cl := kclient(bs)
		defer cl.Close()
		adm := kadm.NewClient(cl)
		ret := "3600000"
		kcreate(t, adm, topic, 2, map[string]*string{"retention.ms": &ret})
		c, cancel := ctx(20)
		defer cancel()
		r, err := adm.CreateTopic(c, 2, 1, nil, topic)
		if err == nil {
			err = r.Err
		}
		t.rec("create-again", kgoErr(err))
		for _, bad := range []struct {
			name string
			p    int32
			rf   int16
		}{{"bad name!", 1, 1}, {t.topic("p0"), 0, 1}, {t.topic("rf3"), 1, 3}} {
			r, err := adm.CreateTopic(c, bad.p, bad.rf, nil, bad.name)
			if err == nil {
				err = r.Err
			}
			t.rec("create", merge(M{"name": bad.name, "partitions": bad.p, "rf": bad.rf}, kgoErr(err)))
		}
		describe := func(label string, until func(map[string]any) bool) {
			end := time.Now().Add(10 * time.Second)
			for {
				rcs, err := adm.DescribeTopicConfigs(c, topic)
				if err != nil {
					t.rec("describe-configs", merge(M{"at": label}, kgoErr(err)))
					return
				}
				cfg := map[string]any{}
				for _, rc := range rcs {
					if rc.Err != nil {
						t.rec("describe-configs", merge(M{"at": label}, kgoErr(rc.Err)))
						return
					}
					for _, e := range rc.Configs {
						cfg[e.Key] = M{"value": e.MaybeValue(), "source": e.Source.String(), "sensitive": e.Sensitive}
					}
				}
				if until == nil || until(cfg) || time.Now().After(end) {
					t.rec("describe-configs", M{"at": label, "configs": cfg})
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		describe("created", nil)
		seg := "1048576"
		ar, err := adm.AlterTopicConfigs(c, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.bytes", Value: &seg},
			{Op: kadm.DeleteConfig, Name: "retention.ms"}}, topic)
		if err == nil {
			err = ar[0].Err
		}
		t.rec("alter", kgoErr(err))
		describe("after alter", func(cfg map[string]any) bool {
			m, _ := cfg["segment.bytes"].(M)
			return m != nil && m["value"] == "1048576"
		})
		bad := "abc"
		ar, err = adm.AlterTopicConfigs(c, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &bad}}, topic)
		if err == nil {
			err = ar[0].Err
		}
		t.rec("alter-invalid", kgoErr(err))
		for _, n := range []int{4, 3} {
			pr, err := adm.UpdatePartitions(c, n, topic)
			if err == nil {
				err = pr[topic].Err
			}
			t.rec("update-partitions", merge(M{"to": n}, kgoErr(err)))
		}
		kwait(adm, topic, 4)
		// Each of Kafka's brokers applies the new partitions when its metadata catches up, and
		// kadm asks any broker: ask until the answer has them (a 3-node Kafka once answered 2).
		var td kadm.TopicDetails
		for end := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			lc, lcancel := ctx(10)
			td, err = adm.ListTopics(lc, topic, t.topic("never"))
			lcancel()
			if err != nil || len(td[topic].Partitions) == 4 || time.Now().After(end) {
				break
			}
		}
		if err != nil {
			t.rec("metadata", kgoErr(err))
		} else {
			for _, name := range []string{topic, t.topic("never")} {
				d, ok := td[name]
				if !ok {
					t.rec("metadata", M{"topic": name, "present": false})
					continue
				}
				parts := []M{}
				for _, p := range sortedKeys(d.Partitions) {
					pd := d.Partitions[p]
					parts = append(parts, merge(M{"partition": p, "leader": pd.Leader, "leader_epoch": pd.LeaderEpoch,
						"replicas": pd.Replicas, "isr": pd.ISR}, kgoErr(pd.Err)))
				}
				t.rec("metadata", merge(M{"topic": name, "present": true, "partitions": parts}, kgoErr(d.Err)))
			}
		}
		dr, err := adm.DeleteTopics(c, topic)
		if err == nil {
			err = dr[topic].Err
		}
		t.rec("delete", kgoErr(err))
		time.Sleep(500 * time.Millisecond)
		dr, err = adm.DeleteTopics(c, t.topic("never"))
		if err == nil {
			err = dr[t.topic("never")].Err
		}
		t.rec("delete-unknown", kgoErr(err))
	})

	scenario("franz_list_offsets_delete_records", func(t *T, bs string) {
		topic := t.topic("")
		cl := kclient(bs)
		defer cl.Close()
		adm := kadm.NewClient(cl)
		kcreate(t, adm, topic, 1, nil)
		end := func() (kadm.ListedOffsets, error) {
			c, cancel := ctx(15)
			defer cancel()
			return adm.ListEndOffsets(c, topic)
		}
		start := func() (kadm.ListedOffsets, error) {
			c, cancel := ctx(15)
			defer cancel()
			return adm.ListStartOffsets(c, topic)
		}
		after := func(ms int64) func() (kadm.ListedOffsets, error) {
			return func() (kadm.ListedOffsets, error) {
				c, cancel := ctx(15)
				defer cancel()
				return adm.ListOffsetsAfterMilli(c, ms, topic)
			}
		}
		klistOffsets(t, adm, topic, "empty/start", start)
		klistOffsets(t, adm, topic, "empty/end", end)
		klistOffsets(t, adm, topic, "empty/after TS0", after(TS0))
		stamps := []int64{5000, 1000, 3000, 3000, 2000}
		for i, s := range stamps {
			c, cancel := ctx(20)
			err := cl.ProduceSync(c, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprint("r", i)), Timestamp: time.UnixMilli(TS0 + s)}).FirstErr()
			cancel()
			t.check(err == nil, "produce")
		}
		klistOffsets(t, adm, topic, "start", start)
		klistOffsets(t, adm, topic, "end", end)
		for _, s := range []int64{0, 2500, 5000, 5001} {
			klistOffsets(t, adm, topic, fmt.Sprintf("after TS0+%d", s), after(TS0+s))
		}
		for _, at := range []int64{3, 1, 5, 9} {
			var o kadm.Offsets
			o.Add(kadm.Offset{Topic: topic, Partition: 0, At: at})
			c, cancel := ctx(20)
			r, err := adm.DeleteRecords(c, o)
			cancel()
			if err == nil {
				if x, ok := r.Lookup(topic, 0); ok {
					t.rec("delete-records", merge(M{"before": at, "low_watermark": x.LowWatermark}, kgoErr(x.Err)))
					continue
				}
			}
			t.rec("delete-records", merge(M{"before": at}, kgoErr(err)))
		}
		klistOffsets(t, adm, topic, "start after delete", start)
		// fetch from 0, below the log start: franz-go resets to the start (its default) and reads on
		c, cancel := ctx(20)
		err := cl.ProduceSync(c, &kgo.Record{Topic: topic, Value: []byte("after"), Timestamp: time.UnixMilli(TS0 + 9000)}).FirstErr()
		cancel()
		t.rec("produce-after-delete", kgoErr(err))
		got, errs := kconsume(bs, topic, 1, 1)
		offs := []int64{}
		for _, r := range got {
			offs = append(offs, r.Offset)
		}
		t.rec("consume-from-0", M{"offsets": offs, "errors": errs})
	})
}

// errDeadline: a poll that ended because its own short context expired is not a fetch error.
var errDeadline = contextDeadline()
