package sluice.diff;

import java.time.Duration;
import java.util.*;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.ApiVersions;
import org.apache.kafka.clients.BootstrapConfiguration;
import org.apache.kafka.clients.ClientRequest;
import org.apache.kafka.clients.ClientResponse;
import org.apache.kafka.clients.ClientUtils;
import org.apache.kafka.clients.ManualMetadataUpdater;
import org.apache.kafka.clients.MetadataRecoveryStrategy;
import org.apache.kafka.clients.NetworkClient;
import org.apache.kafka.clients.NetworkClientUtils;
import org.apache.kafka.clients.NodeApiVersions;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.metrics.Metrics;
import org.apache.kafka.common.network.Selector;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.requests.ApiVersionsRequest;
import org.apache.kafka.common.requests.ApiVersionsResponse;
import org.apache.kafka.common.utils.Time;
import org.apache.kafka.common.utils.internals.LogContext;

import static sluice.diff.Main.*;

/**
 * Scenarios for the newest versions of Produce (13), Fetch (18), ListOffsets (11), OffsetCommit (10),
 * OffsetFetch (10), ApiVersions (5) and DescribeLogDirs (5) as kafka-clients 4.4.0 sees them
 * (issue 18, item 4). Registered from Main's static block; same transcript conventions as Main.
 */
final class Versions {
    private Versions() {}

    static void register() {
        scenario("list_offsets_tiered_local", Versions::listOffsetsTieredLocal);
        scenario("api_versions_max", Versions::apiVersionsMax);
        scenario("produce_fetch_latest", Versions::produceFetchLatest);
        scenario("describe_log_dirs_v5", Versions::describeLogDirsV5);
    }

    /**
     * Topic configs of these scenarios: records carry 2001 timestamps (TS0), which Kafka's first
     * time-retention pass (~5.5 min after it starts) would delete; the scenarios must not depend on
     * how long the suite has been running.
     */
    static final Map<String, String> KEEP = Map.of("retention.ms", "-1");

    /** The APIs whose versions issue 18 raises to Kafka 4.4's highest. */
    static final ApiKeys[] RAISED = {ApiKeys.PRODUCE, ApiKeys.FETCH, ApiKeys.LIST_OFFSETS, ApiKeys.OFFSET_COMMIT,
            ApiKeys.OFFSET_FETCH, ApiKeys.API_VERSIONS, ApiKeys.DESCRIBE_LOG_DIRS};

    // ------------------------------------------------------------------ a bare NetworkClient

    /**
     * A kafka-clients NetworkClient connected to one broker (`at`, a node of DescribeCluster's answer;
     * on a cluster target the bootstrap lists several): it negotiates ApiVersions exactly as
     * producers, consumers and admin clients do (newest request version first, the broker's own
     * range after an UNSUPPORTED_VERSION answer) and keeps the result as NodeApiVersions.
     */
    static final class Probe implements AutoCloseable {
        final Metrics metrics = new Metrics();
        final ApiVersions apiVersions = new ApiVersions();
        final NetworkClient client;
        final Node node;

        Probe(Node at) throws Exception {
            String bs = at.host() + ":" + at.port();
            node = new Node(-1, at.host(), at.port());
            LogContext lc = new LogContext("[diff-versions] ");
            AdminClientConfig cfg = new AdminClientConfig(Map.of("bootstrap.servers", bs));
            Selector selector = new Selector(30_000L, metrics, Time.SYSTEM, "diff-versions",
                    ClientUtils.createChannelBuilder(cfg, Time.SYSTEM, lc), lc);
            client = new NetworkClient(selector, new ManualMetadataUpdater(List.of(node)), "diff-versions", 1,
                    50L, 1000L, 64 * 1024, 64 * 1024, 30_000, 10_000L, 30_000L, Time.SYSTEM, true, apiVersions, lc,
                    MetadataRecoveryStrategy.NONE, BootstrapConfiguration.DISABLED, false);
            if (!NetworkClientUtils.awaitReady(client, node, Time.SYSTEM, 20_000))
                throw new IllegalStateException("broker not ready: " + bs);
        }

        NodeApiVersions versions() { return apiVersions.get(node.idString()); }

        /** Sends one ApiVersions request (version chosen by the client as for any request). */
        ApiVersionsResponse apiVersions(String clusterId, int nodeId) throws Exception {
            ApiVersionsRequest.Builder b = new ApiVersionsRequest.Builder();
            b.setClusterId(clusterId);
            b.setNodeId(nodeId);
            ClientRequest req = client.newClientRequest(node.idString(), b, Time.SYSTEM.milliseconds(), true);
            ClientResponse resp = NetworkClientUtils.sendAndReceive(client, req, Time.SYSTEM);
            return (ApiVersionsResponse) resp.responseBody();
        }

        public void close() throws Exception {
            client.close();
            metrics.close();
        }
    }

    /** The first node of DescribeCluster's answer (the only one on a single broker). */
    static Node firstNode(Admin a) throws Exception {
        return a.describeCluster().nodes().get(20, TimeUnit.SECONDS).iterator().next();
    }

    /** Every broker's id: DescribeLogDirs asks each of them (one on a single broker), so which
     *  broker holds which partition (placement, on a cluster) does not show in the transcript. */
    static List<Integer> allNodeIds(Admin a) throws Exception {
        List<Integer> ids = new ArrayList<>();
        for (Node n : a.describeCluster().nodes().get(20, TimeUnit.SECONDS)) ids.add(n.id());
        return ids;
    }

    static void recNegotiated(T t, String label, NodeApiVersions v, ApiKeys... keys) {
        Map<String, Object> m = new TreeMap<>();
        for (ApiKeys k : keys) m.put(k.name, v.latestUsableVersion(k));
        t.rec("negotiated", "for", label, "versions", m);
    }

    // ------------------------------------------------------------------ scenarios

    /**
     * ApiVersions as the Java client sees it: the highest version the broker advertises and the one
     * the client will use (NodeApiVersions.latestUsableVersion) for the seven raised APIs only, then
     * ApiVersions v5's cluster/node check (KIP-1242) with the right, a wrong, and a half-given identity.
     */
    static void apiVersionsMax(T t, String bs) throws Exception {
        String clusterId;
        Node at;
        try (Admin a = admin(bs)) {
            DescribeClusterResult dc = a.describeCluster();
            clusterId = dc.clusterId().get(20, TimeUnit.SECONDS);
            at = dc.nodes().get(20, TimeUnit.SECONDS).iterator().next();
        }
        int nodeId = at.id();   // the probe talks to that node, so its id is the "right node id"
        try (Probe p = new Probe(at)) {
            NodeApiVersions v = p.versions();
            t.check(v != null, "ApiVersions negotiated");
            for (ApiKeys k : RAISED) {
                t.rec("api-version", "api", k.name, "key", (int) k.id, "broker_max", (int) v.apiVersion(k).maxVersion(),
                      "usable", (int) v.latestUsableVersion(k), "client_max", (int) k.latestVersion());
            }
            Object[][] cases = {
                {"right cluster id, right node id", clusterId, nodeId},
                {"wrong cluster id, right node id", "AAAAAAAAAAAAAAAAAAAAAQ", nodeId},
                {"right cluster id, wrong node id", clusterId, nodeId + 100},
                {"right cluster id, no node id", clusterId, -1},
                {"no cluster id, right node id", null, nodeId},
                {"neither", null, -1},
            };
            for (Object[] c : cases) {
                try {
                    ApiVersionsResponse r = p.apiVersions((String) c[1], (Integer) c[2]);
                    Errors e = Errors.forCode(r.data().errorCode());
                    t.rec("cluster-check", "case", c[0], "error", e.name(), "api_keys_listed", !r.data().apiKeys().isEmpty());
                } catch (Exception e) {
                    t.rec("cluster-check", kv(err(e), "case", c[0]));
                }
            }
        }
    }

    /** Admin.listOffsets with every OffsetSpec of kafka-clients 4.4 (KIP-734, KIP-405, KIP-1005, KIP-1023). */
    static void listOffsetsTieredLocal(T t, String bs) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            create(a, topic, 3, KEEP);
            long[][] stamps = {{5000, 1000, 3000, 3000, 2000}, {100, 200, 300}};   // partition 2 stays empty
            try (KafkaProducer<byte[], byte[]> p = producer(bs)) {
                int i = 0;
                for (int part = 0; part < stamps.length; part++)
                    for (long s : stamps[part])
                        recMeta(t, i++, p.send(new ProducerRecord<>(topic, part, TS0 + s, null, b("p" + part + "-" + s))));
            }
            TopicPartition p1 = new TopicPartition(topic, 1);
            long low = a.deleteRecords(Map.of(p1, RecordsToDelete.beforeOffset(1))).lowWatermarks().get(p1).get(20, TimeUnit.SECONDS).lowWatermark();
            t.rec("delete-records", "partition", 1, "before", 1, "low_watermark", low);
            Object[][] specs = {
                {"earliest", OffsetSpec.earliest()},
                {"latest", OffsetSpec.latest()},
                {"max_timestamp", OffsetSpec.maxTimestamp()},
                {"earliest_local", OffsetSpec.earliestLocal()},
                {"latest_tiered", OffsetSpec.latestTiered()},
                {"earliest_pending_upload", OffsetSpec.earliestPendingUpload()},
                {"time:TS0+150", OffsetSpec.forTimestamp(TS0 + 150)},
                {"time:TS0+2500", OffsetSpec.forTimestamp(TS0 + 2500)},
                {"time:TS0+9000", OffsetSpec.forTimestamp(TS0 + 9000)},
            };
            for (Object[] s : specs)
                for (int part = 0; part < 3; part++)
                    lo(t, a, new TopicPartition(topic, part), (String) s[0], (OffsetSpec) s[1]);
            // one request for all three partitions with a tiered spec
            Map<TopicPartition, OffsetSpec> all = new HashMap<>();
            for (int part = 0; part < 3; part++) all.put(new TopicPartition(topic, part), OffsetSpec.latestTiered());
            try {
                Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> r = a.listOffsets(all).all().get(20, TimeUnit.SECONDS);
                Map<String, Object> m = new TreeMap<>();
                for (Map.Entry<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> e : r.entrySet())
                    m.put(Integer.toString(e.getKey().partition()), e.getValue().offset() + "/" + e.getValue().timestamp());
                t.rec("list-offsets-all", "spec", "latest_tiered", "result", m);
            } catch (Exception e) {
                t.rec("list-offsets-all", kv(err(e), "spec", "latest_tiered"));
            }
        }
    }

    /**
     * Produce (v13: topic ids), Fetch (v18) and, through the KIP-848 consumer with manual assignment,
     * OffsetCommit/OffsetFetch v10 (topic ids); the classic consumer's commit (v9, names) alongside.
     */
    static void produceFetchLatest(T t, String bs) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            create(a, topic, 2, KEEP);
            try (Probe p = new Probe(firstNode(a))) {
                recNegotiated(t, "client-broker", p.versions(), ApiKeys.PRODUCE, ApiKeys.FETCH, ApiKeys.OFFSET_COMMIT, ApiKeys.OFFSET_FETCH);
            }
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            try (KafkaProducer<byte[], byte[]> p = producer(bs)) {   // idempotent, acks=all
                for (int i = 0; i < 12; i++) {
                    ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, i % 2, TS0 + i, b("k" + i), b("v" + i));
                    r.headers().add("i", b(Integer.toString(i)));
                    fs.add(p.send(r));
                }
                p.flush();
            }
            for (int i = 0; i < fs.size(); i++) recMeta(t, i, fs.get(i));
            List<ConsumerRecord<byte[], byte[]>> got = consumeAll(bs, topic, 2, fs.size());
            for (ConsumerRecord<byte[], byte[]> r : got) t.rec("record", kv(recordMap(r)));
            t.check(got.size() == fs.size(), "every record consumed");

            TopicPartition p0 = new TopicPartition(topic, 0), p1 = new TopicPartition(topic, 1);
            for (String protocol : new String[] {"consumer", "classic"}) {
                String gid = t.topic("group-" + protocol);
                try (KafkaConsumer<byte[], byte[]> c = consumer(bs, "group.id", gid, "group.protocol", protocol)) {
                    c.assign(List.of(p0, p1));
                    int n = 0;
                    long end = System.nanoTime() + 20_000_000_000L;
                    while (n < fs.size() && System.nanoTime() < end) n += c.poll(Duration.ofMillis(300)).count();
                    t.rec("assigned-consume", "protocol", protocol, "count", n);
                    c.commitSync(Map.of(p0, new OffsetAndMetadata(3, "meta-" + protocol), p1, new OffsetAndMetadata(6)), Duration.ofSeconds(20));
                    Map<TopicPartition, OffsetAndMetadata> cm = c.committed(Set.of(p0, p1, new TopicPartition(topic, 7)), Duration.ofSeconds(20));
                    Map<String, Object> m = new TreeMap<>();
                    for (Map.Entry<TopicPartition, OffsetAndMetadata> e : cm.entrySet())
                        m.put(Integer.toString(e.getKey().partition()), e.getValue() == null ? null
                                : e.getValue().offset() + "/" + e.getValue().metadata() + "/epoch:" + e.getValue().leaderEpoch().isPresent());
                    t.rec("committed", "protocol", protocol, "offsets", m);
                    c.commitSync(Map.of(p1, new OffsetAndMetadata(c.position(p1))), Duration.ofSeconds(20));
                    t.rec("committed-position", "protocol", protocol, "p1", c.committed(Set.of(p1), Duration.ofSeconds(20)).get(p1).offset());
                } catch (Exception e) {
                    t.rec("group-error", kv(err(e), "protocol", protocol));
                }
                try {
                    Map<TopicPartition, OffsetAndMetadata> offs = a.listConsumerGroupOffsets(gid).partitionsToOffsetAndMetadata().get(20, TimeUnit.SECONDS);
                    Map<String, Object> m = new TreeMap<>();
                    for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) m.put(Integer.toString(e.getKey().partition()), e.getValue().offset());
                    t.rec("admin-group-offsets", "protocol", protocol, "offsets", m);
                } catch (Exception e) {
                    t.rec("admin-group-offsets", kv(err(e), "protocol", protocol));
                }
            }

            // The producer caches the topic id: after the topic is deleted and created again it has a new id,
            // a v13 produce with the old one gets UNKNOWN_TOPIC_ID (retriable), the producer refreshes
            // metadata and the retry with the new id lands at offset 0 of the new topic.
            String rc = t.topic("recreated");
            create(a, rc, 1, KEEP);
            try (KafkaProducer<byte[], byte[]> p = producer(bs, "enable.idempotence", "false", "acks", "1")) {
                recMeta(t, 100, p.send(new ProducerRecord<>(rc, 0, TS0, null, b("before"))));
                a.deleteTopics(List.of(rc)).all().get(20, TimeUnit.SECONDS);
                long end = System.nanoTime() + 15_000_000_000L;
                while (System.nanoTime() < end && a.listTopics().names().get().contains(rc)) Thread.sleep(200);
                create(a, rc, 1, KEEP);
                recMeta(t, 101, p.send(new ProducerRecord<>(rc, 0, TS0 + 1, null, b("after"))));
            }
            List<String> vals = new ArrayList<>();
            for (ConsumerRecord<byte[], byte[]> r : consumeAll(bs, rc, 1, 1)) vals.add(r.offset() + ":" + s(r.value()));
            t.rec("recreated-topic", "values", vals);
        }
    }

    /** Admin.describeLogDirs: what the client exposes (v4 TotalBytes/UsableBytes, v5 IsCordoned). */
    static void describeLogDirsV5(T t, String bs) throws Exception {
        String topic = t.topic("");
        try (Admin a = admin(bs)) {
            create(a, topic, 2, KEEP);
            try (KafkaProducer<byte[], byte[]> p = producer(bs)) {
                for (int i = 0; i < 3; i++) recMeta(t, i, p.send(new ProducerRecord<>(topic, 0, TS0 + i, null, b("d" + i))));
            }
            List<Integer> nodes = allNodeIds(a);
            try (Probe p = new Probe(firstNode(a))) {
                recNegotiated(t, "client-broker", p.versions(), ApiKeys.DESCRIBE_LOG_DIRS);
            }
            long end = System.nanoTime() + 10_000_000_000L;
            while (true) {
                List<Object> dirs = new ArrayList<>(), mine = new ArrayList<>();
                Map<Integer, Map<String, LogDirDescription>> all = a.describeLogDirs(nodes).allDescriptions().get(20, TimeUnit.SECONDS);
                for (Map<String, LogDirDescription> m : all.values()) {
                    for (Map.Entry<String, LogDirDescription> de : m.entrySet()) {
                        LogDirDescription d = de.getValue();
                        Map<String, Object> info = new TreeMap<>();
                        info.put("error", d.error() == null ? "none" : d.error().getClass().getSimpleName());
                        info.put("path_absolute", de.getKey().startsWith("/"));
                        info.put("total_bytes_present", d.totalBytes().isPresent());
                        info.put("usable_bytes_present", d.usableBytes().isPresent());
                        info.put("usable_le_total", d.totalBytes().isPresent() && d.usableBytes().isPresent()
                                && d.usableBytes().getAsLong() <= d.totalBytes().getAsLong());
                        info.put("is_cordoned", d.isCordoned());
                        dirs.add(info);
                        for (Map.Entry<TopicPartition, ReplicaInfo> e : d.replicaInfos().entrySet()) {
                            if (!e.getKey().topic().equals(topic)) continue;
                            Map<String, Object> r = new TreeMap<>();
                            r.put("partition", e.getKey().partition());
                            r.put("size_positive", e.getValue().size() > 0);   // bytes on disk: layout-specific
                            r.put("offset_lag", e.getValue().offsetLag());
                            r.put("is_future", e.getValue().isFuture());
                            mine.add(r);
                        }
                    }
                }
                mine.sort(Comparator.comparing(Object::toString));
                boolean ready = mine.size() >= 2 && mine.toString().contains("size_positive=true");
                if (ready || System.nanoTime() > end) {
                    t.rec("log-dirs", "nodes", all.size(), "dirs", dirs, "replicas_of_topic", mine);
                    break;
                }
                Thread.sleep(200);
            }
        }
    }
}
