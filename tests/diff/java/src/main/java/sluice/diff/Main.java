package sluice.diff;

import java.io.FileWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Java kafka-clients scenarios of the differential suite. Each scenario records what the client
 * observes as JSON lines (same conventions as tests/diff/common.py); tests/diff/run.py compares
 * the transcripts of Kafka and sluice after tests/diff/normalize.py.
 *
 * Usage: Main BOOTSTRAP OUTDIR SCENARIO...   prints "RESULT id status seconds" per scenario.
 */
public final class Main {
    static final long TS0 = 1_000_000_000_000L;

    interface Body { void run(T t, String bs) throws Exception; }

    static final LinkedHashMap<String, Body> SCENARIOS = new LinkedHashMap<>();

    static void scenario(String name, Body b) { SCENARIOS.put("java." + name, b); }

    static {
        scenario("produce_consume_keyed", Main::produceConsumeKeyed);
        scenario("acks_0_1_all", Main::acks);
        for (String c : new String[] {"gzip", "snappy", "lz4", "zstd"}) {
            scenario("codec_" + c, (t, bs) -> codec(t, bs, c));
        }
        scenario("list_offsets", Main::listOffsets);
        scenario("admin_topics_configs", Main::adminTopicsConfigs);
        scenario("delete_records_and_fetch_below_start", Main::deleteRecords);
        scenario("errors_create_topics", Main::errorsCreateTopics);
        scenario("errors_unknown_topic", Main::errorsUnknownTopic);
        scenario("errors_record_too_large", Main::errorsRecordTooLarge);
        scenario("describe_cluster_and_log_dirs", Main::describeClusterLogDirs);
        scenario("transactional_producer", Main::transactional);
        scenario("group_classic", (t, bs) -> group(t, bs, "classic"));
        scenario("group_consumer_protocol", (t, bs) -> group(t, bs, "consumer"));
        Versions.register();
        Txn.register();
    }

    // ------------------------------------------------------------------ transcript

    static final class CheckFailed extends Exception {
        CheckFailed(String m) { super(m); }
    }

    static final class T implements AutoCloseable {
        final String sid;
        final PrintWriter out;
        T(String sid, String path) throws IOException {
            this.sid = sid;
            this.out = new PrintWriter(new FileWriter(path, StandardCharsets.UTF_8));
        }
        void rec(String kind, Object... kv) {
            TreeMap<String, Object> m = new TreeMap<>();
            m.put("kind", kind);
            for (int i = 0; i + 1 < kv.length; i += 2) m.put((String) kv[i], kv[i + 1]);
            out.println(Json.write(m));
            out.flush();
        }
        void check(boolean cond, String what) throws CheckFailed {
            if (!cond) {
                rec("check-failed", "what", what);
                throw new CheckFailed(what);
            }
        }
        String topic(String suffix) {
            String base = sid.replace('.', '-').replace('_', '-');
            return suffix.isEmpty() ? base : base + "-" + suffix;
        }
        public void close() { out.close(); }
    }

    /** The exception a client observes: the cause's class (ExecutionException unwrapped). */
    static Map<String, Object> err(Throwable e) {
        while ((e instanceof ExecutionException || e instanceof KafkaException && e.getCause() != null
                && !(e instanceof org.apache.kafka.common.errors.ApiException)) && e.getCause() != null) {
            e = e.getCause();
        }
        Map<String, Object> m = new TreeMap<>();
        m.put("error", e.getClass().getSimpleName());
        m.put("msg", String.valueOf(e.getMessage()));
        return m;
    }

    static Object[] kv(Map<String, Object> m, Object... more) {
        List<Object> l = new ArrayList<>(Arrays.asList(more));
        for (Map.Entry<String, Object> e : m.entrySet()) { l.add(e.getKey()); l.add(e.getValue()); }
        return l.toArray();
    }

    static String s(byte[] b) { return b == null ? null : new String(b, StandardCharsets.UTF_8); }
    static byte[] b(String s) { return s == null ? null : s.getBytes(StandardCharsets.UTF_8); }

    // ------------------------------------------------------------------ clients

    static Properties base(String bs) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bs);
        p.put("request.timeout.ms", "30000");
        p.put("default.api.timeout.ms", "30000");
        return p;
    }

    static Admin admin(String bs) { return Admin.create(base(bs)); }

    static KafkaProducer<byte[], byte[]> producer(String bs, String... kvs) {
        Properties p = base(bs);
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        p.put("delivery.timeout.ms", "45000");
        p.put("max.block.ms", "15000");
        p.put("linger.ms", "5");
        for (int i = 0; i + 1 < kvs.length; i += 2) p.put(kvs[i], kvs[i + 1]);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bs, String... kvs) {
        Properties p = base(bs);
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        for (int i = 0; i + 1 < kvs.length; i += 2) p.put(kvs[i], kvs[i + 1]);
        return new KafkaConsumer<>(p);
    }

    static void create(Admin a, String topic, int partitions, Map<String, String> configs) throws Exception {
        a.createTopics(List.of(new NewTopic(topic, partitions, (short) 1).configs(configs))).all().get(20, TimeUnit.SECONDS);
        waitReady(a, topic, partitions);
    }

    static void waitReady(Admin a, String topic, int partitions) throws Exception {
        long end = System.nanoTime() + 15_000_000_000L;
        while (System.nanoTime() < end) {
            try {
                TopicDescription d = a.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic);
                if (d.partitions().size() == partitions && d.partitions().stream().allMatch(p -> p.leader() != null)) return;
            } catch (ExecutionException e) { /* not yet */ }
            Thread.sleep(100);
        }
        throw new IllegalStateException("topic not ready: " + topic);
    }

    static Map<String, Object> recordMap(ConsumerRecord<byte[], byte[]> r) {
        Map<String, Object> m = new TreeMap<>();
        m.put("partition", r.partition());
        m.put("offset", r.offset());
        m.put("key", s(r.key()));
        m.put("value", s(r.value()));
        m.put("timestamp", r.timestamp());
        m.put("ts_type", r.timestampType().name);
        List<List<String>> hs = new ArrayList<>();
        for (Header h : r.headers()) hs.add(Arrays.asList(h.key(), s(h.value())));
        m.put("headers", hs);
        m.put("leader_epoch_present", r.leaderEpoch().isPresent());
        return m;
    }

    static List<ConsumerRecord<byte[], byte[]>> consumeAll(String bs, String topic, int partitions, int expect,
                                                          String... kvs) {
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = consumer(bs, kvs)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) tps.add(new TopicPartition(topic, p));
            c.assign(tps);
            c.seekToBeginning(tps);
            long end = System.nanoTime() + 20_000_000_000L;
            while (out.size() < expect && System.nanoTime() < end) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(300))) out.add(r);
            }
        }
        out.sort(Comparator.comparingInt((ConsumerRecord<byte[], byte[]> r) -> r.partition()).thenComparingLong(ConsumerRecord::offset));
        return out;
    }

    static void watermarks(T t, Admin a, String topic, int partitions) throws Exception {
        for (int p = 0; p < partitions; p++) {
            TopicPartition tp = new TopicPartition(topic, p);
            long lo = a.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset();
            long hi = a.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().offset();
            t.rec("watermarks", "partition", p, "low", lo, "high", hi);
        }
    }

    static void recMeta(T t, int i, Future<RecordMetadata> f) {
        try {
            RecordMetadata md = f.get(25, TimeUnit.SECONDS);
            t.rec("delivery", "i", i, "partition", md.partition(), "offset", md.offset(), "timestamp", md.timestamp());
        } catch (Exception e) {
            t.rec("delivery", kv(err(e), "i", i));
        }
    }

    // ------------------------------------------------------------------ scenarios

    static void produceConsumeKeyed(T t, String bs) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            create(a, topic, 3, Map.of());
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            try (KafkaProducer<byte[], byte[]> p = producer(bs)) {   // defaults: idempotent, acks=all
                for (int i = 0; i < 30; i++) {
                    ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, null, TS0 + i * 1000L,
                            b("key-" + (i % 7)), b("value-" + i));
                    r.headers().add("h-index", b(Integer.toString(i))).add("h-dup", b("a")).add("h-dup", b("b"));
                    fs.add(p.send(r));
                }
                fs.add(p.send(new ProducerRecord<>(topic, 0, TS0 + 99_000, null, b("no-key"))));
                fs.add(p.send(new ProducerRecord<>(topic, 1, TS0 + 99_001, b("null-value"), (byte[]) null)));
                p.flush();
            }
            for (int i = 0; i < fs.size(); i++) recMeta(t, i, fs.get(i));
            List<ConsumerRecord<byte[], byte[]>> got = consumeAll(bs, topic, 3, fs.size());
            for (ConsumerRecord<byte[], byte[]> r : got) t.rec("record", kv(recordMap(r)));
            t.check(got.size() == fs.size(), "every record consumed");
            watermarks(t, a, topic, 3);
        }
    }

    static void acks(T t, String bs) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            create(a, topic, 1, Map.of());
            for (String acks : new String[] {"0", "1", "all"}) {
                List<Future<RecordMetadata>> fs = new ArrayList<>();
                String idem = acks.equals("all") ? "true" : "false";
                try (KafkaProducer<byte[], byte[]> p = producer(bs, "acks", acks, "enable.idempotence", idem)) {
                    for (int i = 0; i < 50; i++)
                        fs.add(p.send(new ProducerRecord<>(topic, null, TS0 + i, null, b("acks" + acks + "-" + i))));
                    p.flush();
                }
                long first = fs.get(0).get().offset(), last = fs.get(49).get().offset();
                t.rec("acks", "acks", acks, "idempotence", idem, "first_offset", first, "last_offset", last);
                // acks=0 requests are still in flight on their own connection when the next producer
                // connects; neither broker orders requests across connections, so wait for them.
                if (acks.equals("0")) waitEnd(a, new TopicPartition(topic, 0), 50);
            }
            List<ConsumerRecord<byte[], byte[]>> got = consumeAll(bs, topic, 1, 150);
            t.rec("consumed", "count", got.size(), "contiguous", contiguous(got));
            watermarks(t, a, topic, 1);
        }
    }

    static void waitEnd(Admin a, TopicPartition tp, long want) throws Exception {
        long end = System.nanoTime() + 15_000_000_000L;
        while (System.nanoTime() < end) {
            if (a.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().offset() >= want) return;
            Thread.sleep(50);
        }
        throw new IllegalStateException("end offset of " + tp + " never reached " + want);
    }

    static boolean contiguous(List<ConsumerRecord<byte[], byte[]>> got) {
        for (int i = 0; i < got.size(); i++) if (got.get(i).offset() != i) return false;
        return true;
    }

    static void codec(T t, String bs, String codec) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            create(a, topic, 1, Map.of());
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            List<String> vals = new ArrayList<>();
            try (KafkaProducer<byte[], byte[]> p = producer(bs, "compression.type", codec, "linger.ms", "50")) {
                for (int i = 0; i < 500; i++) {
                    String v = codec + "-" + i + "-" + "x".repeat(i % 50);
                    vals.add(v);
                    ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, null, TS0 + i, b("k" + i), b(v));
                    r.headers().add("i", b(Integer.toString(i)));
                    fs.add(p.send(r));
                }
                p.flush();
            }
            for (int i = 0; i < fs.size(); i += 97) recMeta(t, i, fs.get(i));
            List<ConsumerRecord<byte[], byte[]>> got = consumeAll(bs, topic, 1, 500);
            t.rec("consumed", "count", got.size(), "contiguous", contiguous(got));
            for (int i = 0; i < got.size(); i += 61) t.rec("record", kv(recordMap(got.get(i))));
            List<String> gv = new ArrayList<>();
            for (ConsumerRecord<byte[], byte[]> r : got) gv.add(s(r.value()));
            t.check(gv.equals(vals), "values round-trip");
            watermarks(t, a, topic, 1);
        }
    }

    static void lo(T t, Admin a, TopicPartition tp, String label, OffsetSpec spec) {
        try {
            ListOffsetsResult.ListOffsetsResultInfo r = a.listOffsets(Map.of(tp, spec), new ListOffsetsOptions().timeoutMs(3000))
                    .partitionResult(tp).get(20, TimeUnit.SECONDS);
            t.rec("list-offsets", "spec", label, "partition", tp.partition(), "offset", r.offset(),
                  "timestamp", r.timestamp(), "leader_epoch", r.leaderEpoch().isPresent());
        } catch (Exception e) {
            t.rec("list-offsets", kv(err(e), "spec", label, "partition", tp.partition()));
        }
    }

    static void listOffsets(T t, String bs) throws Exception {
        String topic = t.topic("");
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin a = admin(bs)) {
            create(a, topic, 1, Map.of());
            lo(t, a, tp, "empty/earliest", OffsetSpec.earliest());
            lo(t, a, tp, "empty/latest", OffsetSpec.latest());
            lo(t, a, tp, "empty/max_timestamp", OffsetSpec.maxTimestamp());
            lo(t, a, tp, "empty/time:TS0", OffsetSpec.forTimestamp(TS0));
            long[] stamps = {5000, 1000, 3000, 3000, 2000};
            try (KafkaProducer<byte[], byte[]> p = producer(bs)) {
                for (int i = 0; i < stamps.length; i++)
                    recMeta(t, i, p.send(new ProducerRecord<>(topic, 0, TS0 + stamps[i], null, b("r" + i))));
            }
            lo(t, a, tp, "earliest", OffsetSpec.earliest());
            lo(t, a, tp, "latest", OffsetSpec.latest());
            lo(t, a, tp, "max_timestamp", OffsetSpec.maxTimestamp());
            for (long s : new long[] {0, 1000, 1001, 2500, 3000, 5000, 5001})
                lo(t, a, tp, "time:TS0+" + s, OffsetSpec.forTimestamp(TS0 + s));
            lo(t, a, new TopicPartition(topic, 9), "latest(unknown partition)", OffsetSpec.latest());
            try (KafkaConsumer<byte[], byte[]> c = consumer(bs)) {
                Map<TopicPartition, OffsetAndTimestamp> r = c.offsetsForTimes(Map.of(tp, TS0 + 2500));
                OffsetAndTimestamp o = r.get(tp);
                t.rec("offsets-for-times", "ts", TS0 + 2500, "offset", o == null ? null : o.offset(),
                      "timestamp", o == null ? null : o.timestamp());
                t.rec("beginning-end", "beginning", c.beginningOffsets(List.of(tp)).get(tp), "end", c.endOffsets(List.of(tp)).get(tp));
            }
        }
    }

    static Map<String, Object> configs(Admin a, String topic) throws Exception {
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config cfg = a.describeConfigs(List.of(res)).all().get(20, TimeUnit.SECONDS).get(res);
        Map<String, Object> m = new TreeMap<>();
        for (ConfigEntry e : cfg.entries()) {
            Map<String, Object> v = new TreeMap<>();
            v.put("value", e.value());
            v.put("source", e.source().name());
            v.put("read_only", e.isReadOnly());
            v.put("sensitive", e.isSensitive());
            v.put("type", e.type().name());
            m.put(e.name(), v);
        }
        return m;
    }

    @SuppressWarnings("unchecked")
    static void describeConfigs(T t, Admin a, String topic, String label, String untilName, String untilValue) {
        long end = System.nanoTime() + 10_000_000_000L;
        try {
            Map<String, Object> m = configs(a, topic);
            while (untilName != null && System.nanoTime() < end) {
                Map<String, Object> e = (Map<String, Object>) m.get(untilName);
                if (e != null && Objects.equals(e.get("value"), untilValue)) break;
                Thread.sleep(100);
                m = configs(a, topic);
            }
            t.rec("describe-configs", "at", label, "configs", m);
        } catch (Exception e) {
            t.rec("describe-configs", kv(err(e), "at", label));
        }
    }

    static void describeTopic(T t, Admin a, String topic, String label) {
        try {
            TopicDescription d = a.describeTopics(List.of(topic)).allTopicNames().get(20, TimeUnit.SECONDS).get(topic);
            List<Object> parts = new ArrayList<>();
            for (TopicPartitionInfo p : d.partitions()) {
                Map<String, Object> m = new TreeMap<>();
                m.put("id", p.partition());
                m.put("leader", p.leader() == null ? null : p.leader().id());
                List<Integer> r = new ArrayList<>(), isr = new ArrayList<>();
                for (Node n : p.replicas()) r.add(n.id());
                for (Node n : p.isr()) isr.add(n.id());
                m.put("replicas", r);
                m.put("isr", isr);
                parts.add(m);
            }
            t.rec("describe-topic", "at", label, "name", d.name(), "internal", d.isInternal(),
                  "topic_id", d.topicId().toString(), "partitions", parts);
        } catch (Exception e) {
            t.rec("describe-topic", kv(err(e), "at", label));
        }
    }

    static void incAlter(T t, Admin a, String topic, String label, AlterConfigOp... ops) {
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        try {
            a.incrementalAlterConfigs(Map.of(res, Arrays.asList(ops))).all().get(20, TimeUnit.SECONDS);
            t.rec("alter", "what", label, "error", null);
        } catch (Exception e) {
            t.rec("alter", kv(err(e), "what", label));
        }
    }

    static void adminTopicsConfigs(T t, String bs) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            CreateTopicsResult cr = a.createTopics(List.of(new NewTopic(topic, 2, (short) 1)
                    .configs(Map.of("retention.ms", "3600000", "max.message.bytes", "200000"))));
            cr.all().get(20, TimeUnit.SECONDS);
            t.rec("created", "partitions", cr.numPartitions(topic).get(), "rf", cr.replicationFactor(topic).get(),
                  "topic_id", cr.topicId(topic).get().toString());
            waitReady(a, topic, 2);
            try {
                a.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(20, TimeUnit.SECONDS);
                t.rec("create-again", "error", null);
            } catch (Exception e) {
                t.rec("create-again", kv(err(e)));
            }
            String vo = t.topic("vo");
            a.createTopics(List.of(new NewTopic(vo, 3, (short) 1)), new CreateTopicsOptions().validateOnly(true)).all().get(20, TimeUnit.SECONDS);
            t.rec("validate-only", "exists", a.listTopics().names().get().contains(vo));
            describeTopic(t, a, topic, "created");
            describeConfigs(t, a, topic, "created", null, null);
            incAlter(t, a, topic, "SET segment.bytes, DELETE retention.ms, SET message.timestamp.type",
                     new AlterConfigOp(new ConfigEntry("segment.bytes", "1048576"), AlterConfigOp.OpType.SET),
                     new AlterConfigOp(new ConfigEntry("retention.ms", null), AlterConfigOp.OpType.DELETE),
                     new AlterConfigOp(new ConfigEntry("message.timestamp.type", "LogAppendTime"), AlterConfigOp.OpType.SET));
            describeConfigs(t, a, topic, "after alter", "segment.bytes", "1048576");
            incAlter(t, a, topic, "APPEND cleanup.policy compact",
                     new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND));
            describeConfigs(t, a, topic, "after append", "cleanup.policy", "delete,compact");
            incAlter(t, a, topic, "SUBTRACT cleanup.policy delete",
                     new AlterConfigOp(new ConfigEntry("cleanup.policy", "delete"), AlterConfigOp.OpType.SUBTRACT));
            describeConfigs(t, a, topic, "after subtract", "cleanup.policy", "compact");
            incAlter(t, a, topic, "SET retention.ms=abc",
                     new AlterConfigOp(new ConfigEntry("retention.ms", "abc"), AlterConfigOp.OpType.SET));
            incAlter(t, a, topic, "SET no.such.config",
                     new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET));
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            try {
                a.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(new ConfigEntry("segment.bytes", "2097152"), AlterConfigOp.OpType.SET))),
                        new AlterConfigsOptions().validateOnly(true)).all().get(20, TimeUnit.SECONDS);
                t.rec("alter-validate-only", "error", null);
            } catch (Exception e) {
                t.rec("alter-validate-only", kv(err(e)));
            }
            for (int n : new int[] {4, 3, 4}) {
                try {
                    a.createPartitions(Map.of(topic, NewPartitions.increaseTo(n))).all().get(20, TimeUnit.SECONDS);
                    t.rec("create-partitions", "total", n, "error", null);
                } catch (Exception e) {
                    t.rec("create-partitions", kv(err(e), "total", n));
                }
            }
            waitReady(a, topic, 4);
            describeTopic(t, a, topic, "after create partitions");
            a.deleteTopics(List.of(topic)).all().get(20, TimeUnit.SECONDS);
            t.rec("deleted");
            long end = System.nanoTime() + 15_000_000_000L;
            while (System.nanoTime() < end && a.listTopics().names().get().contains(topic)) Thread.sleep(200);
            describeTopic(t, a, topic, "after delete");
            try {
                a.deleteTopics(List.of(topic)).all().get(20, TimeUnit.SECONDS);
                t.rec("delete-again", "error", null);
            } catch (Exception e) {
                t.rec("delete-again", kv(err(e)));
            }
        }
    }

    static void deleteRecords(T t, String bs) throws Exception {
        String topic = t.topic("");
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin a = admin(bs)) {
            create(a, topic, 1, Map.of());
            try (KafkaProducer<byte[], byte[]> p = producer(bs)) {
                for (int i = 0; i < 10; i++) p.send(new ProducerRecord<>(topic, 0, TS0 + i, null, b("r" + i)));
                p.flush();
            }
            for (long before : new long[] {4, 2, 10, 11, -1}) {
                try {
                    DeletedRecords d = a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(before))).lowWatermarks().get(tp).get(20, TimeUnit.SECONDS);
                    t.rec("delete-records", "before", before, "low_watermark", d.lowWatermark());
                } catch (Exception e) {
                    t.rec("delete-records", kv(err(e), "before", before));
                }
            }
            watermarks(t, a, topic, 1);
            try (KafkaConsumer<byte[], byte[]> c = consumer(bs, "auto.offset.reset", "none")) {
                c.assign(List.of(tp));
                c.seek(tp, 3);
                try {
                    int n = 0;
                    long end = System.nanoTime() + 10_000_000_000L;
                    while (n == 0 && System.nanoTime() < end) n += c.poll(Duration.ofMillis(300)).count();
                    t.rec("fetch-below-start", "records", n);
                } catch (Exception e) {
                    t.rec("fetch-below-start", kv(err(e)));
                }
            }
            try {
                a.deleteRecords(Map.of(new TopicPartition(topic, 3), RecordsToDelete.beforeOffset(1)),
                        new DeleteRecordsOptions().timeoutMs(3000)).all().get(20, TimeUnit.SECONDS);
                t.rec("delete-records-unknown-partition", "error", null);
            } catch (Exception e) {
                t.rec("delete-records-unknown-partition", kv(err(e)));
            }
        }
    }

    static void errorsCreateTopics(T t, String bs) throws Exception {
        try (Admin a = admin(bs)) {
            Object[][] cases = {{"bad name!", 1, 1}, {"..", 1, 1}, {"z".repeat(250), 1, 1},
                    {t.topic("p0"), 0, 1}, {t.topic("pm5"), -5, 1}, {t.topic("rf3"), 1, 3}, {t.topic("rf0"), 1, 0}};
            for (Object[] c : cases) {
                String name = (String) c[0];
                try {
                    a.createTopics(List.of(new NewTopic(name, (Integer) c[1], (short) (int) (Integer) c[2]))).all().get(20, TimeUnit.SECONDS);
                    t.rec("create", "name", name.substring(0, Math.min(60, name.length())), "partitions", c[1], "rf", c[2], "error", null);
                } catch (Exception e) {
                    t.rec("create", kv(err(e), "name", name.substring(0, Math.min(60, name.length())), "partitions", c[1], "rf", c[2]));
                }
            }
            String d = t.topic("defaults");
            a.createTopics(List.of(new NewTopic(d, Optional.empty(), Optional.empty()))).all().get(20, TimeUnit.SECONDS);
            waitReady(a, d, 1);
            describeTopic(t, a, d, "created with broker defaults");
        }
    }

    static void errorsUnknownTopic(T t, String bs) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            describeTopic(t, a, topic, "unknown");
            describeConfigs(t, a, topic, "unknown", null, null);
            try {
                a.deleteTopics(List.of(topic)).all().get(20, TimeUnit.SECONDS);
                t.rec("delete-unknown", "error", null);
            } catch (Exception e) {
                t.rec("delete-unknown", kv(err(e)));
            }
            lo(t, a, new TopicPartition(topic, 0), "latest(unknown topic)", OffsetSpec.latest());
            try (KafkaConsumer<byte[], byte[]> c = consumer(bs, "allow.auto.create.topics", "false")) {
                t.rec("partitions-for", "result", String.valueOf(c.partitionsFor(topic)));
            } catch (Exception e) {
                t.rec("partitions-for", kv(err(e)));
            }
            t.rec("exists", "exists", a.listTopics().names().get().contains(topic));
            // the producer's Metadata allows auto-create: the broker creates the topic
            try (KafkaProducer<byte[], byte[]> p = producer(bs)) {
                recMeta(t, 0, p.send(new ProducerRecord<>(t.topic("auto"), null, TS0, null, b("x"))));
            }
            describeTopic(t, a, t.topic("auto"), "auto-created by producer");
        }
    }

    static void errorsRecordTooLarge(T t, String bs) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            create(a, topic, 1, Map.of("max.message.bytes", "1024"));
            for (String idem : new String[] {"false", "true"}) {
                try (KafkaProducer<byte[], byte[]> p = producer(bs, "enable.idempotence", idem, "retries", idem.equals("true") ? "5" : "0")) {
                    recMeta(t, 0, p.send(new ProducerRecord<>(topic, 0, TS0, null, b("small"))));
                    recMeta(t, 1, p.send(new ProducerRecord<>(topic, 0, TS0 + 1, null, b("y".repeat(4000)))));
                    recMeta(t, 2, p.send(new ProducerRecord<>(topic, 0, TS0 + 2, null, b("small-again"))));
                }
            }
            watermarks(t, a, topic, 1);
        }
    }

    static void describeClusterLogDirs(T t, String bs) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            create(a, topic, 2, Map.of());
            DescribeClusterResult dc = a.describeCluster();
            List<Object> nodes = new ArrayList<>();
            for (Node n : dc.nodes().get()) nodes.add(Map.of("node_id", n.id(), "host", n.host(), "port", n.port(), "rack", String.valueOf(n.rack())));
            t.rec("describe-cluster", "cluster_id", dc.clusterId().get(), "controller", dc.controller().get().id(), "nodes_detail", nodes);
            List<Integer> nodeIds = new ArrayList<>();   // every broker (placement on a cluster is the broker's choice)
            for (Node n : dc.nodes().get()) nodeIds.add(n.id());
            int ndirs = 0;
            List<Object> mine = new ArrayList<>();
            long end = System.nanoTime() + 10_000_000_000L;
            while (true) {   // a new partition's replica may show up in DescribeLogDirs a moment later
                ndirs = 0;
                mine.clear();
                Map<Integer, Map<String, LogDirDescription>> dirs = a.describeLogDirs(nodeIds).allDescriptions().get(20, TimeUnit.SECONDS);
                List<Object> dirInfo = new ArrayList<>();
                for (Map<String, LogDirDescription> m : dirs.values()) {
                    for (LogDirDescription d : m.values()) {
                        ndirs++;
                        for (Map.Entry<TopicPartition, ReplicaInfo> e : d.replicaInfos().entrySet()) {
                            if (e.getKey().topic().equals(topic))
                                mine.add(Map.of("partition", e.getKey().partition(), "size", e.getValue().size(),
                                                "is_future", e.getValue().isFuture()));
                        }
                        dirInfo.add(Map.of("error", d.error() == null ? "none" : d.error().getClass().getSimpleName(),
                                           "total_bytes_present", d.totalBytes().isPresent(),
                                           "usable_bytes_present", d.usableBytes().isPresent()));
                    }
                }
                if (mine.size() >= 2 || System.nanoTime() > end) {
                    t.rec("log-dir-info", "dirs", dirInfo);
                    break;
                }
                Thread.sleep(200);
            }
            mine.sort(Comparator.comparing(Object::toString));
            t.rec("log-dirs", "count", ndirs, "replicas_of_topic", mine);
        }
    }

    static void transactional(T t, String bs) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            create(a, topic, 1, Map.of());
            try (KafkaProducer<byte[], byte[]> p = producer(bs, "transactional.id", "diff-java-tx", "transaction.timeout.ms", "10000")) {
                try {
                    p.initTransactions();
                    t.rec("init-transactions", "error", null);
                    p.beginTransaction();
                    p.send(new ProducerRecord<>(topic, 0, TS0, null, b("committed")));
                    p.commitTransaction();
                    t.rec("commit", "error", null);
                    p.beginTransaction();
                    p.send(new ProducerRecord<>(topic, 0, TS0 + 1, null, b("aborted")));
                    p.flush();
                    p.abortTransaction();
                    t.rec("abort", "error", null);
                } catch (Exception e) {
                    t.rec("transaction-error", kv(err(e)));
                }
            }
            List<String> seen = new ArrayList<>();
            for (ConsumerRecord<byte[], byte[]> r : consumeAll(bs, topic, 1, 1, "isolation.level", "read_committed")) seen.add(s(r.value()));
            t.rec("read-committed", "values", seen);
            watermarks(t, a, topic, 1);
        }
    }

    static void group(T t, String bs, String protocol) throws Exception {
        String topic = t.topic("");
        String gid = t.topic("group");
        try (Admin a = admin(bs)) {
            create(a, topic, 2, Map.of());
            try (KafkaProducer<byte[], byte[]> p = producer(bs)) {
                for (int i = 0; i < 10; i++) p.send(new ProducerRecord<>(topic, i % 2, TS0 + i, null, b("g" + i)));
                p.flush();
            }
            int n = 0;
            String[] kvs = protocol.equals("classic")
                    ? new String[] {"group.id", gid, "group.protocol", "classic", "session.timeout.ms", "10000"}
                    : new String[] {"group.id", gid, "group.protocol", "consumer"};
            try (KafkaConsumer<byte[], byte[]> c = consumer(bs, kvs)) {
                c.subscribe(List.of(topic));
                long end = System.nanoTime() + 20_000_000_000L;
                while (n < 10 && System.nanoTime() < end) n += c.poll(Duration.ofMillis(300)).count();
                t.rec("consumed", "count", n);
                List<Integer> assigned = new ArrayList<>();
                for (TopicPartition tp : c.assignment()) assigned.add(tp.partition());
                Collections.sort(assigned);
                t.rec("assignment", "partitions", assigned);
                c.commitSync(Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(3, "meta")));
                Map<TopicPartition, OffsetAndMetadata> committed = c.committed(Set.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1)));
                Map<String, Object> cm = new TreeMap<>();
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : committed.entrySet())
                    cm.put(Integer.toString(e.getKey().partition()), e.getValue() == null ? null : e.getValue().offset() + "/" + e.getValue().metadata());
                t.rec("committed", "offsets", cm);
                ConsumerGroupDescription d = a.describeConsumerGroups(List.of(gid)).all().get(20, TimeUnit.SECONDS).get(gid);
                t.rec("describe-group", "state", d.groupState().toString(), "type", d.type().toString(), "members", d.members().size(),
                      "simple", d.isSimpleConsumerGroup());
            } catch (Exception e) {
                t.rec("group-error", kv(err(e)));
            }
            try {
                Map<TopicPartition, OffsetAndMetadata> offs = a.listConsumerGroupOffsets(gid).partitionsToOffsetAndMetadata().get(20, TimeUnit.SECONDS);
                Map<String, Object> m = new TreeMap<>();
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) m.put(Integer.toString(e.getKey().partition()), e.getValue().offset());
                t.rec("group-offsets", "offsets", m);
                a.alterConsumerGroupOffsets(gid, Map.of(new TopicPartition(topic, 1), new OffsetAndMetadata(2))).all().get(20, TimeUnit.SECONDS);
                a.deleteConsumerGroupOffsets(gid, Set.of(new TopicPartition(topic, 0))).all().get(20, TimeUnit.SECONDS);
                offs = a.listConsumerGroupOffsets(gid).partitionsToOffsetAndMetadata().get(20, TimeUnit.SECONDS);
                m = new TreeMap<>();
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) m.put(Integer.toString(e.getKey().partition()), e.getValue().offset());
                t.rec("group-offsets-after-alter-delete", "offsets", m);
                List<String> ids = new ArrayList<>();
                for (GroupListing g : a.listGroups().all().get(20, TimeUnit.SECONDS)) if (g.groupId().equals(gid)) ids.add(g.groupId() + "/" + g.type().map(Object::toString).orElse("?"));
                t.rec("list-groups", "mine", ids);
                a.deleteConsumerGroups(List.of(gid)).all().get(20, TimeUnit.SECONDS);
                t.rec("delete-group", "error", null);
                try {
                    a.describeConsumerGroups(List.of(gid)).all().get(20, TimeUnit.SECONDS);
                    t.rec("describe-deleted-group", "error", null);
                } catch (Exception e) {
                    t.rec("describe-deleted-group", kv(err(e)));
                }
            } catch (Exception e) {
                t.rec("group-admin-error", kv(err(e)));
            }
        }
    }

    // ------------------------------------------------------------------ main

    public static void main(String[] args) throws Exception {
        if (args.length >= 1 && args[0].equals("--list")) {
            for (String s : SCENARIOS.keySet()) System.out.println(s);
            return;
        }
        if (args.length < 3) {
            System.err.println("usage: Main BOOTSTRAP OUTDIR SCENARIO...");
            System.exit(2);
        }
        String bs = args[0], outdir = args[1];
        for (int i = 2; i < args.length; i++) {
            String sid = args[i];
            Body body = SCENARIOS.get(sid);
            long t0 = System.nanoTime();
            String status;
            if (body == null) {
                status = "unknown";
            } else {
                try (T t = new T(sid, outdir + "/" + sid + ".jsonl")) {
                    try {
                        body.run(t, bs);
                        t.rec("end");
                        status = "ok";
                    } catch (CheckFailed e) {
                        status = "failed";
                    } catch (Exception e) {
                        t.rec("exception", kv(err(e)));
                        e.printStackTrace();
                        status = "failed";
                    }
                }
            }
            System.out.printf(Locale.ROOT, "RESULT %s %s %.1f%n", sid, status, (System.nanoTime() - t0) / 1e9);
            System.out.flush();
        }
        System.exit(0);
    }
}
