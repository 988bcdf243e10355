package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

func sErr(err error) M {
	if err == nil {
		return M{"error": nil}
	}
	var ke sarama.KError
	if errors.As(err, &ke) {
		return M{"error": fmt.Sprintf("KError(%d)", int16(ke)), "code": int16(ke)}
	}
	var te *sarama.TopicError
	if errors.As(err, &te) {
		return M{"error": fmt.Sprintf("KError(%d)", int16(te.Err)), "code": int16(te.Err), "msg": err.Error()}
	}
	var pe sarama.ProducerErrors
	if errors.As(err, &pe) && len(pe) > 0 {
		return sErr(pe[0].Err)
	}
	return M{"error": fmt.Sprintf("%T", err), "msg": err.Error()}
}

func sConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_0_0_0
	cfg.ClientID = "diff-sarama"
	cfg.Net.DialTimeout = 5 * time.Second
	cfg.Net.ReadTimeout = 15 * time.Second
	cfg.Metadata.Retry.Max = 5
	cfg.Metadata.Retry.Backoff = 200 * time.Millisecond
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Retry.Max = 3
	cfg.Consumer.Return.Errors = true
	cfg.Admin.Timeout = 15 * time.Second
	return cfg
}

func init() {
	scenario("sarama_produce_consume_admin", func(t *T, bs string) {
		topic := t.topic("")
		cfg := sConfig()
		adm, err := sarama.NewClusterAdmin(seeds(bs), cfg)
		if err != nil {
			panic(err)
		}
		defer adm.Close()
		ret := "3600000"
		err = adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1,
			ConfigEntries: map[string]*string{"retention.ms": &ret}}, false)
		t.rec("create", sErr(err))
		t.rec("create-again", sErr(adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false)))
		t.rec("create-rf3", sErr(adm.CreateTopic(t.topic("rf3"), &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 3}, false)))
		t.rec("create-bad-name", sErr(adm.CreateTopic("bad name!", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false)))
		end := time.Now().Add(15 * time.Second)
		for time.Now().Before(end) {
			md, err := adm.DescribeTopics([]string{topic})
			if err == nil && len(md) == 1 && md[0].Err == sarama.ErrNoError && len(md[0].Partitions) == 2 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		p, err := sarama.NewSyncProducer(seeds(bs), cfg)
		if err != nil {
			panic(err)
		}
		for i := 0; i < 10; i++ {
			part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%3)),
				Value: sarama.StringEncoder(fmt.Sprintf("v%d", i)), Timestamp: time.UnixMilli(TS0 + int64(i)),
				Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte(fmt.Sprint(i))}}})
			t.rec("send", merge(M{"i": i, "partition": part, "offset": off}, sErr(err)))
		}
		p.Close()
		cl, err := sarama.NewClient(seeds(bs), cfg)
		if err != nil {
			panic(err)
		}
		defer cl.Close()
		for part := int32(0); part < 2; part++ {
			for _, at := range []int64{sarama.OffsetOldest, sarama.OffsetNewest, TS0 + 5} {
				o, err := cl.GetOffset(topic, part, at)
				t.rec("get-offset", merge(M{"partition": part, "time": at, "offset": o}, sErr(err)))
			}
		}
		cons, err := sarama.NewConsumerFromClient(cl)
		if err != nil {
			panic(err)
		}
		defer cons.Close()
		for part := int32(0); part < 2; part++ {
			hi, _ := cl.GetOffset(topic, part, sarama.OffsetNewest)
			pc, err := cons.ConsumePartition(topic, part, sarama.OffsetOldest)
			if err != nil {
				t.rec("consume", merge(M{"partition": part}, sErr(err)))
				continue
			}
			timeout := time.After(15 * time.Second)
		loop:
			for n := int64(0); n < hi; n++ {
				select {
				case m := <-pc.Messages():
					hs := [][]string{}
					for _, h := range m.Headers {
						hs = append(hs, []string{string(h.Key), string(h.Value)})
					}
					t.rec("record", M{"partition": m.Partition, "offset": m.Offset, "key": string(m.Key), "value": string(m.Value),
						"timestamp": m.Timestamp.UnixMilli(), "headers": hs})
				case e := <-pc.Errors():
					t.rec("consume-error", sErr(e.Err))
					break loop
				case <-timeout:
					t.rec("consume-timeout", M{"partition": part})
					break loop
				}
			}
			pc.Close()
		}
		entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
		cfgs := map[string]any{}
		for _, e := range entries {
			cfgs[e.Name] = M{"value": e.Value, "source": e.Source.String(), "read_only": e.ReadOnly, "sensitive": e.Sensitive}
		}
		t.rec("describe-configs", merge(M{"configs": cfgs}, sErr(err)))
		seg := "1048576"
		t.rec("incremental-alter", sErr(adm.IncrementalAlterConfig(sarama.TopicResource, topic,
			map[string]sarama.IncrementalAlterConfigsEntry{"segment.bytes": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &seg}}, false)))
		t.rec("create-partitions-3", sErr(adm.CreatePartitions(topic, 3, nil, false)))
		t.rec("create-partitions-2", sErr(adm.CreatePartitions(topic, 2, nil, false)))
		t.rec("delete-records", sErr(adm.DeleteRecords(topic, map[int32]int64{0: 1})))
		t.rec("delete-records-past-end", sErr(adm.DeleteRecords(topic, map[int32]int64{0: 999})))
		t.rec("delete-topic", sErr(adm.DeleteTopic(topic)))
		time.Sleep(500 * time.Millisecond)
		t.rec("delete-unknown", sErr(adm.DeleteTopic(t.topic("never"))))
	})
}
