package dev.sluice.streams;

import java.time.Duration;
import java.time.Instant;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The word count of sluice's Streams test (tests/streams, issue 23), on Kafka Streams 4.4.0 as
 * published: input lines -> flatMapValues(words) -> groupBy(word) (repartition topic
 * APP-words-repartition) -> count() (RocksDB store "counts", changelog APP-counts-changelog)
 * -> output topic (word -> count as an 8-byte big-endian long).
 *
 * Usage: java -jar wordcount.jar --bootstrap H:P --guarantee at_least_once|exactly_once_v2
 *            --app-id ID --input T --output T --state-dir DIR
 *            [--commit-ms 100] [--cache-bytes 0] [--threads 1] [--set key=value ...]
 *
 * Prints one line per event on stdout, each starting with the wall time in ms:
 * "STATE OLD->NEW", "FATAL <exception>" (then exits 3), "STOPPED". SIGTERM closes the
 * application (KafkaStreams.close, 30 s) and exits 0. Nothing here is broker-specific.
 */
public final class WordCount {
    public static void main(String[] argv) throws Exception {
        Map<String, String> a = new HashMap<>();
        Properties extra = new Properties();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            String k = argv[i], v = argv[i + 1];
            if (k.equals("--set")) {
                int eq = v.indexOf('=');
                if (eq < 0) die("--set wants key=value, got " + v);
                extra.put(v.substring(0, eq), v.substring(eq + 1));
            } else if (k.startsWith("--")) {
                a.put(k.substring(2), v);
            } else {
                die("unexpected argument " + k);
            }
        }
        if (argv.length % 2 != 0) die("arguments come in pairs: " + Arrays.toString(argv));
        for (String req : new String[] {"bootstrap", "guarantee", "app-id", "input", "output", "state-dir"}) {
            if (!a.containsKey(req)) die("--" + req + " is required");
        }

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, a.get("app-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, a.get("guarantee"));
        p.put(StreamsConfig.STATE_DIR_CONFIG, a.get("state-dir"));
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, a.getOrDefault("threads", "1"));
        // Commit (and, under exactly_once_v2, end a transaction) every 100 ms: a kill repeats little.
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, a.getOrDefault("commit-ms", "100"));
        // 0: no record cache, so every input word makes one changelog and one output record.
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, a.getOrDefault("cache-bytes", "0"));
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        // Purge (DeleteRecords) the consumed part of the repartition topic every second (default 30 s).
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, "1000");
        // Small segments for the internal topics, so the changelog (cleanup.policy=compact) has
        // closed segments a cleaner can compact during the run; 1 MiB is Kafka's minimum.
        p.put(StreamsConfig.topicPrefix("segment.bytes"), "1048576");
        p.put(StreamsConfig.topicPrefix("segment.ms"), "5000");
        p.put(StreamsConfig.topicPrefix("min.cleanable.dirty.ratio"), "0.01");
        // A killed instance's partitions go to its successor after 6 s (the broker minimum)
        // instead of the 45 s default.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), "6000");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), "1500");
        p.putAll(extra);

        StreamsBuilder b = new StreamsBuilder();
        b.stream(a.get("input"), Consumed.with(Serdes.String(), Serdes.String()))
            .flatMapValues(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split("\\W+")))
            .filter((k, w) -> !w.isEmpty())
            .groupBy((k, w) -> w, Grouped.<String, String>as("words").withKeySerde(Serdes.String())
                .withValueSerde(Serdes.String()))
            .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts")
                .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
            .toStream()
            .to(a.get("output"), Produced.with(Serdes.String(), Serdes.Long()));
        Topology t = b.build(p);
        log("TOPOLOGY " + t.describe().toString().replace('\n', ' '));

        KafkaStreams ks = new KafkaStreams(t, p);
        CountDownLatch done = new CountDownLatch(1);
        AtomicInteger exit = new AtomicInteger(0);
        ks.setStateListener((n, o) -> {
            log("STATE " + o + "->" + n);
            if (n == KafkaStreams.State.ERROR || n == KafkaStreams.State.NOT_RUNNING) {
                done.countDown();
            }
        });
        // A fatal error ends the application (the test sees the exit and the exception) rather
        // than being retried silently; transient broker errors are retried by Streams itself.
        ks.setUncaughtExceptionHandler(e -> {
            log("FATAL " + e.toString().replace('\n', ' ')
                + (e.getCause() != null ? " caused by " + e.getCause().toString().replace('\n', ' ') : ""));
            e.printStackTrace(System.out);
            exit.set(3);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            ks.close(Duration.ofSeconds(30));
            log("STOPPED");
        }));
        ks.start();
        done.await();
        if (exit.get() != 0) {
            ks.close(Duration.ofSeconds(30));
            log("STOPPED");
            Runtime.getRuntime().halt(exit.get());
        }
    }

    static void log(String s) {
        System.out.println(Instant.now().toEpochMilli() + " " + s);
        System.out.flush();
    }

    static void die(String msg) {
        System.err.println("wordcount: " + msg);
        System.exit(2);
    }
}
