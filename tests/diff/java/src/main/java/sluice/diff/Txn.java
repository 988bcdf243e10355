package sluice.diff;

import java.time.Duration;
import java.util.*;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.protocol.Errors;

import static sluice.diff.Main.*;

/**
 * Transactions (issue 23) as kafka-clients 4.4.0 sees them: commit and abort visibility to
 * read_committed and read_uncommitted consumers (the offsets the control markers take), zombie
 * fencing, sendOffsetsToTransaction, the broker's abort of a timed-out transaction, the last stable
 * offset (ListOffsets by isolation level, what a read_committed consumer skips), client misuse, and
 * DescribeTransactions / ListTransactions. Registered from Main's static block; same transcript
 * conventions as Main.
 *
 * Commit and abort are answered before the coordinator has written the markers into the data
 * partitions (Kafka writes them afterwards), so whatever depends on the markers (LSO, high
 * watermark, committed offsets of a transaction) is read after a bounded wait for the partition
 * to settle (LSO = high watermark), and then recorded.
 */
final class Txn {
    private Txn() {}

    static void register() {
        scenario("txn_commit_abort_visibility", Txn::commitAbortVisibility);
        scenario("txn_zombie_fencing", Txn::zombieFencing);
        scenario("txn_send_offsets", Txn::sendOffsets);
        scenario("txn_timeout", Txn::timeout);
        scenario("txn_lso", Txn::lso);
        scenario("txn_misuse", Txn::misuse);
        scenario("txn_describe_list", Txn::describeList);
    }

    /** Records carry 2001 timestamps (TS0): no time retention on these topics (see Versions.KEEP). */
    static final Map<String, String> KEEP = Map.of("retention.ms", "-1");

    static KafkaProducer<byte[], byte[]> txProducer(String bs, String txid, String... kvs) {
        List<String> all = new ArrayList<>(List.of("transactional.id", txid));
        all.addAll(Arrays.asList(kvs));
        return producer(bs, all.toArray(new String[0]));
    }

    /** A send whose outcome is recorded later with {@link #delivered}. */
    record Sent(String value, Future<RecordMetadata> f) {}

    static Sent send(KafkaProducer<byte[], byte[]> p, String topic, int partition, long ts, String value) {
        return new Sent(value, p.send(new ProducerRecord<>(topic, partition, TS0 + ts, null, b(value))));
    }

    static void delivered(T t, List<Sent> sent) {
        for (Sent s : sent) {
            try {
                RecordMetadata md = s.f().get(25, TimeUnit.SECONDS);
                t.rec("delivery", "value", s.value(), "topic", md.topic(), "partition", md.partition(), "offset", md.offset());
            } catch (Exception e) {
                t.rec("delivery", kv(terr(e), "value", s.value()));
            }
        }
    }

    /**
     * err() and, for a bare KafkaException whose text ends with the client's own text for a
     * protocol error ("Unexpected error in InitProducerIdResponse; <Errors.message()>"), that
     * error's name: the broker's error code is otherwise only in the (dropped) message.
     */
    static Map<String, Object> terr(Throwable e) {
        Map<String, Object> m = err(e);
        if ("KafkaException".equals(m.get("error"))) {
            String msg = String.valueOf(m.get("msg"));
            Errors best = null;
            for (Errors x : Errors.values())
                if (x != Errors.NONE && x.message() != null && msg.endsWith(x.message())
                        && (best == null || x.message().length() > best.message().length())) best = x;
            if (best != null) m.put("error_code", best.code() + " " + best.name());
        }
        return m;
    }

    /** Runs one client call and records its outcome (error null, or the exception class). */
    interface Call { void run() throws Exception; }

    static boolean step(T t, String what, Call c) {
        try {
            c.run();
            t.rec("step", "what", what, "error", null);
            return true;
        } catch (Exception e) {
            t.rec("step", kv(terr(e), "what", what));
            return false;
        }
    }

    static List<TopicPartition> tps(Object... topicPartition) {
        List<TopicPartition> l = new ArrayList<>();
        for (int i = 0; i + 1 < topicPartition.length; i += 2)
            l.add(new TopicPartition((String) topicPartition[i], (Integer) topicPartition[i + 1]));
        return l;
    }

    static long offset(Admin a, TopicPartition tp, OffsetSpec spec, IsolationLevel iso) throws Exception {
        return a.listOffsets(Map.of(tp, spec), new ListOffsetsOptions(iso)).partitionResult(tp).get(20, TimeUnit.SECONDS).offset();
    }

    /** earliest, latest (high watermark) and latest with read_committed (the last stable offset). */
    static long[] offsets(Admin a, TopicPartition tp) throws Exception {
        return new long[] {offset(a, tp, OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED),
                offset(a, tp, OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED),
                offset(a, tp, OffsetSpec.latest(), IsolationLevel.READ_COMMITTED)};
    }

    static void recOffsets(T t, String at, TopicPartition tp, long[] o) {
        t.rec("offsets", "at", at, "topic", tp.topic(), "partition", tp.partition(), "earliest", o[0],
              "latest", o[1], "latest_read_committed", o[2]);
    }

    /** ListOffsets now, no waiting: for states that do not move on their own (an open transaction). */
    static void offsetsNow(T t, Admin a, String at, List<TopicPartition> tps) throws Exception {
        for (TopicPartition tp : tps) recOffsets(t, at, tp, offsets(a, tp));
    }

    /**
     * Waits (bounded) until every partition's last stable offset equals its high watermark and is
     * at least `minEnd` (the markers of an ended transaction are written after the client's answer),
     * then records them. What the last poll saw is recorded if that never happens.
     */
    static void settled(T t, Admin a, String at, List<TopicPartition> tps, long seconds, long... minEnd) throws Exception {
        long end = System.nanoTime() + seconds * 1_000_000_000L;
        for (int i = 0; i < tps.size(); i++) {
            TopicPartition tp = tps.get(i);
            long want = i < minEnd.length ? minEnd[i] : 0;
            long[] o = offsets(a, tp);
            while ((o[2] != o[1] || o[1] < want) && System.nanoTime() < end) {
                Thread.sleep(100);
                o = offsets(a, tp);
            }
            recOffsets(t, at, tp, o);
        }
    }

    /**
     * A consumer (assign, from the beginning) with the given isolation level reads until its
     * position reaches the end offset it is told (endOffsets: the LSO for read_committed), and
     * records every record and the final positions: the offsets skipped are the markers and, for
     * read_committed, the aborted records.
     */
    static void read(T t, String bs, String isolation, List<TopicPartition> tps) {
        try (KafkaConsumer<byte[], byte[]> c = consumer(bs, "isolation.level", isolation)) {
            c.assign(tps);
            c.seekToBeginning(tps);
            drain(t, c, isolation, tps);
        }
    }

    static void drain(T t, KafkaConsumer<byte[], byte[]> c, String reader, List<TopicPartition> tps) {
        Map<TopicPartition, Long> ends = c.endOffsets(tps, Duration.ofSeconds(20));
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        long end = System.nanoTime() + 20_000_000_000L;
        while (System.nanoTime() < end) {
            boolean done = true;
            for (TopicPartition tp : tps) if (c.position(tp) < ends.get(tp)) done = false;
            if (done) break;
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) got.add(r);
        }
        got.sort(Comparator.comparing((ConsumerRecord<byte[], byte[]> r) -> r.topic()).thenComparingInt(ConsumerRecord::partition)
                .thenComparingLong(ConsumerRecord::offset));
        for (ConsumerRecord<byte[], byte[]> r : got)
            t.rec("read", "reader", reader, "topic", r.topic(), "partition", r.partition(), "offset", r.offset(), "value", s(r.value()));
        List<Object> pos = new ArrayList<>();
        for (TopicPartition tp : tps)
            pos.add(Map.of("topic", tp.topic(), "partition", tp.partition(), "end_offset", ends.get(tp), "position", c.position(tp)));
        t.rec("read-end", "reader", reader, "count", got.size(), "positions", pos);
    }

    static List<String> names(Collection<TopicPartition> tps) {
        List<String> l = new ArrayList<>();
        for (TopicPartition tp : tps) l.add(tp.topic() + "-" + tp.partition());
        Collections.sort(l);
        return l;
    }

    static final Set<TransactionState> PREPARING = EnumSet.of(TransactionState.PREPARE_COMMIT, TransactionState.PREPARE_ABORT,
            TransactionState.PREPARE_EPOCH_FENCE);

    /**
     * DescribeTransactions of one id; returns the description (null on error) for relations.
     * While the state is PrepareCommit/PrepareAbort (the coordinator completes a transaction once
     * every partition leader has written its marker, which a client can already see on the
     * partitions; on a cluster that shows) it asks again, bounded, and records the settled answer.
     */
    static TransactionDescription describe(T t, Admin a, String at, String txid) {
        try {
            long end = System.nanoTime() + 10_000_000_000L;
            TransactionDescription d = a.describeTransactions(List.of(txid)).description(txid).get(20, TimeUnit.SECONDS);
            while (PREPARING.contains(d.state()) && System.nanoTime() < end) {
                Thread.sleep(100);
                d = a.describeTransactions(List.of(txid)).description(txid).get(20, TimeUnit.SECONDS);
            }
            t.rec("describe-txn", "at", at, "state", d.state().toString(), "producer_id", d.producerId(),
                  "producer_epoch", d.producerEpoch(), "timeout_ms", d.transactionTimeoutMs(),
                  "txn_start_time_ms", d.transactionStartTimeMs().isPresent() ? d.transactionStartTimeMs().getAsLong() : null,
                  "partitions", names(d.topicPartitions()), "coordinator_id", d.coordinatorId());
            return d;
        } catch (Exception e) {
            t.rec("describe-txn", kv(err(e), "at", at));
            return null;
        }
    }

    // ------------------------------------------------------------------ scenarios

    /**
     * One transactional producer, three transactions over 2 partitions of one topic and 1 of
     * another: commit, abort, commit. Offsets after each (the markers take one offset per
     * partition per transaction), then what read_committed and read_uncommitted consumers see.
     */
    static void commitAbortVisibility(T t, String bs) throws Exception {
        String ta = t.topic("a"), tb = t.topic("b");
        List<TopicPartition> tps = tps(ta, 0, ta, 1, tb, 0);
        try (Admin a = admin(bs)) {
            create(a, ta, 2, KEEP);
            create(a, tb, 1, KEEP);
            try (KafkaProducer<byte[], byte[]> p = txProducer(bs, t.topic("txid"))) {
                step(t, "init-transactions", p::initTransactions);
                String[] outcome = {"commit", "abort", "commit"};
                long[] ends = {0, 0, 0};
                for (int n = 1; n <= 3; n++) {
                    p.beginTransaction();
                    List<Sent> sent = new ArrayList<>();
                    sent.add(send(p, ta, 0, n * 10, "t" + n + "-a0-0"));
                    sent.add(send(p, ta, 0, n * 10 + 1, "t" + n + "-a0-1"));
                    sent.add(send(p, ta, 1, n * 10 + 2, "t" + n + "-a1-0"));
                    sent.add(send(p, tb, 0, n * 10 + 3, "t" + n + "-b0-0"));
                    p.flush();
                    delivered(t, sent);
                    if (n == 2) offsetsNow(t, a, "txn 2 open", tps);
                    String o = outcome[n - 1];
                    step(t, o + " txn " + n, o.equals("commit") ? p::commitTransaction : p::abortTransaction);
                    ends[0] += 3;   // 2 records + 1 marker
                    ends[1] += 2;
                    ends[2] += 2;
                    settled(t, a, "after " + o + " txn " + n, tps, 15, ends);
                }
            }
            read(t, bs, "read_committed", tps);
            read(t, bs, "read_uncommitted", tps);
        }
    }

    /**
     * Producer A opens a transaction and writes; producer B initializes the same transactional.id,
     * which fences A and aborts A's open transaction. A's next send and its commit fail; B's
     * transaction commits. read_committed sees none of A's records.
     */
    static void zombieFencing(T t, String bs) throws Exception {
        String topic = t.topic("");
        String txid = t.topic("txid");
        List<TopicPartition> tps = tps(topic, 0, topic, 1);
        try (Admin a = admin(bs)) {
            create(a, topic, 2, KEEP);
            KafkaProducer<byte[], byte[]> pa = txProducer(bs, txid);
            try {
                step(t, "A init-transactions", pa::initTransactions);
                pa.beginTransaction();
                List<Sent> sent = new ArrayList<>(List.of(send(pa, topic, 0, 0, "zombie-0")));
                pa.flush();
                delivered(t, sent);
                TransactionDescription da = describe(t, a, "A open", txid);
                try (KafkaProducer<byte[], byte[]> pb = txProducer(bs, txid)) {
                    step(t, "B init-transactions", pb::initTransactions);
                    TransactionDescription db = describe(t, a, "after B init", txid);
                    if (da != null && db != null)
                        t.rec("relation", "what", "B init against A open", "same_producer_id", da.producerId() == db.producerId(),
                              "epoch_delta", db.producerEpoch() - da.producerEpoch());
                    // A's next sends, one at a time: to the partition it already wrote to, then to a new one.
                    String[][] lates = {{"0", "zombie-1"}, {"1", "zombie-2"}};
                    for (String[] l : lates) {
                        List<Sent> late = new ArrayList<>();
                        try {
                            late.add(send(pa, topic, Integer.parseInt(l[0]), 1, l[1]));
                            t.rec("step", "what", "A send " + l[1], "error", null);
                        } catch (Exception e) {
                            t.rec("step", kv(terr(e), "what", "A send " + l[1]));
                        }
                        step(t, "A flush", pa::flush);
                        delivered(t, late);
                    }
                    step(t, "A commit", pa::commitTransaction);
                    step(t, "A abort", pa::abortTransaction);
                    step(t, "A begin", pa::beginTransaction);
                    settled(t, a, "after fencing", tps, 15, 2, 0);
                    pb.beginTransaction();
                    List<Sent> bsent = new ArrayList<>(List.of(send(pb, topic, 0, 3, "b-0"), send(pb, topic, 1, 4, "b-1")));
                    pb.flush();
                    delivered(t, bsent);
                    step(t, "B commit", pb::commitTransaction);
                    settled(t, a, "after B commit", tps, 15, 4, 2);
                    TransactionDescription dc = describe(t, a, "after B commit", txid);
                    if (db != null && dc != null)
                        t.rec("relation", "what", "B commit against B init", "same_producer_id", db.producerId() == dc.producerId(),
                              "epoch_delta", dc.producerEpoch() - db.producerEpoch());
                }
            } finally {
                pa.close(Duration.ofSeconds(5));
            }
            read(t, bs, "read_committed", tps);
            read(t, bs, "read_uncommitted", tps);
        }
    }

    /**
     * The group's committed offsets through the AdminClient (OffsetFetch): all partitions (`parts`
     * null) or the ones given, with require_stable or not. With `settle`, waits (bounded) while
     * the answer is an error, lacks a partition asked for (the AdminClient leaves out a partition
     * answered UNSTABLE_OFFSET_COMMIT) or shows no offset of at least `waitFor`: a transaction's
     * offsets become stable when its markers reach __consumer_offsets, after the client's answer.
     */
    static void groupOffsets(T t, Admin a, String at, String gid, List<TopicPartition> parts, boolean requireStable,
                             long waitFor, boolean settle) {
        long end = System.nanoTime() + 10_000_000_000L;
        String which = parts == null ? "all" : String.join(",", names(parts));
        while (true) {
            try {
                ListConsumerGroupOffsetsOptions o = new ListConsumerGroupOffsetsOptions().requireStable(requireStable).timeoutMs(3000);
                ListConsumerGroupOffsetsSpec spec = new ListConsumerGroupOffsetsSpec();
                if (parts != null) spec.topicPartitions(parts);
                Map<TopicPartition, OffsetAndMetadata> offs = a.listConsumerGroupOffsets(Map.of(gid, spec), o)
                        .partitionsToOffsetAndMetadata(gid).get(20, TimeUnit.SECONDS);
                Map<String, Object> m = new TreeMap<>();
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet())
                    m.put(e.getKey().topic() + "-" + e.getKey().partition(),
                          e.getValue() == null ? null : e.getValue().offset() + "/" + e.getValue().metadata());
                long have = -1;
                for (OffsetAndMetadata om : offs.values()) if (om != null) have = Math.max(have, om.offset());
                boolean done = have >= waitFor && (parts == null || offs.keySet().containsAll(parts));
                if (done || !settle || System.nanoTime() > end) {
                    t.rec("group-offsets", "at", at, "partitions", which, "require_stable", requireStable, "offsets", m);
                    return;
                }
            } catch (Exception e) {
                if (!settle || System.nanoTime() > end) {
                    t.rec("group-offsets", kv(err(e), "at", at, "partitions", which, "require_stable", requireStable));
                    return;
                }
            }
            try { Thread.sleep(100); } catch (InterruptedException e) { return; }
        }
    }

    /** All four OffsetFetch variants (every partition or the input partition, require_stable or not). */
    static void groupOffsets4(T t, Admin a, String at, String gid, TopicPartition itp, long waitFor, boolean settle) {
        for (List<TopicPartition> parts : Arrays.asList(null, List.of(itp)))
            for (boolean stable : new boolean[] {false, true})
                groupOffsets(t, a, at, gid, parts, stable, waitFor, settle);
    }

    static void consumerCommitted(T t, KafkaConsumer<byte[], byte[]> c, String at, TopicPartition itp) {
        try {
            OffsetAndMetadata mine = c.committed(Set.of(itp), Duration.ofSeconds(3)).get(itp);
            t.rec("consumer-committed", "at", at, "offset", mine == null ? null : mine.offset() + "/" + mine.metadata());
        } catch (Exception e) {
            t.rec("consumer-committed", kv(err(e), "at", at));
        }
    }

    /**
     * Consume-transform-produce with a subscribed group member: transaction 1 (3 records, offset 3
     * sent to the transaction) aborted, transaction 2 (all 6, offset 6) committed. The group's
     * committed offsets (AdminClient, and the consumer's own committed()) while open, after the
     * abort and after the commit; the output topic as read_committed and read_uncommitted see it.
     */
    static void sendOffsets(T t, String bs) throws Exception {
        String in = t.topic("in"), out = t.topic("out"), gid = t.topic("group");
        TopicPartition itp = new TopicPartition(in, 0);
        try (Admin a = admin(bs)) {
            create(a, in, 1, KEEP);
            create(a, out, 1, KEEP);
            try (KafkaProducer<byte[], byte[]> p = producer(bs)) {
                for (int i = 0; i < 6; i++) p.send(new ProducerRecord<>(in, 0, TS0 + i, null, b("in-" + i)));
                p.flush();
            }
            try (KafkaConsumer<byte[], byte[]> c = consumer(bs, "group.id", gid, "group.protocol", "classic",
                    "isolation.level", "read_committed", "session.timeout.ms", "10000");
                 KafkaProducer<byte[], byte[]> p = txProducer(bs, t.topic("txid"))) {
                step(t, "init-transactions", p::initTransactions);
                c.subscribe(List.of(in));
                List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
                long end = System.nanoTime() + 20_000_000_000L;
                while (got.size() < 6 && System.nanoTime() < end) for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) got.add(r);
                t.check(got.size() == 6, "the group member consumed the 6 input records");
                ConsumerGroupMetadata gm = c.groupMetadata();
                t.rec("group-metadata", "generation", gm.generationId(), "member_id_set", !gm.memberId().isEmpty());

                p.beginTransaction();
                List<Sent> sent = new ArrayList<>();
                for (int i = 0; i < 3; i++) sent.add(send(p, out, 0, i, "out-" + s(got.get(i).value())));
                step(t, "send-offsets txn 1", () -> p.sendOffsetsToTransaction(Map.of(itp, new OffsetAndMetadata(3, "txn1")), gm));
                p.flush();
                delivered(t, sent);
                groupOffsets4(t, a, "txn 1 open", gid, itp, -1, false);
                consumerCommitted(t, c, "txn 1 open", itp);
                step(t, "abort txn 1", p::abortTransaction);
                groupOffsets4(t, a, "after abort", gid, itp, -1, true);
                consumerCommitted(t, c, "after abort", itp);

                p.beginTransaction();
                sent.clear();
                for (int i = 0; i < 6; i++) sent.add(send(p, out, 0, 10 + i, "out-" + s(got.get(i).value())));
                step(t, "send-offsets txn 2", () -> p.sendOffsetsToTransaction(Map.of(itp, new OffsetAndMetadata(6, "txn2")), c.groupMetadata()));
                p.flush();
                delivered(t, sent);
                step(t, "commit txn 2", p::commitTransaction);
                groupOffsets4(t, a, "after commit", gid, itp, 6, true);
                consumerCommitted(t, c, "after commit", itp);
            }
            settled(t, a, "output", tps(out, 0), 15, 11);
            read(t, bs, "read_committed", tps(out, 0));
            read(t, bs, "read_uncommitted", tps(out, 0));
        }
    }

    /**
     * transaction.timeout.ms 3000 and a transaction left open: the coordinator aborts it (Kafka
     * checks every transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by default,
     * so within ~13 s); the LSO then moves past the abort marker, read_committed sees nothing of
     * it, and the producer's next calls fail as recorded.
     */
    static void timeout(T t, String bs) throws Exception {
        String topic = t.topic("");
        String txid = t.topic("txid");
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin a = admin(bs)) {
            create(a, topic, 1, KEEP);
            try (KafkaProducer<byte[], byte[]> p = txProducer(bs, txid, "transaction.timeout.ms", "3000")) {
                step(t, "init-transactions", p::initTransactions);
                p.beginTransaction();
                List<Sent> sent = new ArrayList<>(List.of(send(p, topic, 0, 0, "open-0")));
                p.flush();
                delivered(t, sent);
                offsetsNow(t, a, "open", List.of(tp));
                TransactionDescription d0 = describe(t, a, "open", txid);
                settled(t, a, "after the broker's abort", List.of(tp), 20, 2);
                TransactionDescription d1 = describe(t, a, "after the broker's abort", txid);
                if (d0 != null && d1 != null)
                    t.rec("relation", "what", "aborted by timeout against open", "same_producer_id", d0.producerId() == d1.producerId(),
                          "epoch_delta", d1.producerEpoch() - d0.producerEpoch());
                List<Sent> late = new ArrayList<>();
                try {
                    late.add(send(p, topic, 0, 1, "late-1"));
                    t.rec("step", "what", "send after timeout", "error", null);
                } catch (Exception e) {
                    t.rec("step", kv(err(e), "what", "send after timeout"));
                }
                step(t, "flush", p::flush);
                delivered(t, late);
                step(t, "commit", p::commitTransaction);
                if (!step(t, "abort", p::abortTransaction)) return;
                if (step(t, "begin again", p::beginTransaction)) {
                    List<Sent> again = new ArrayList<>(List.of(send(p, topic, 0, 2, "again-2")));
                    step(t, "flush again", p::flush);
                    delivered(t, again);
                    step(t, "commit again", p::commitTransaction);
                }
            }
            settled(t, a, "end", List.of(tp), 15);
            read(t, bs, "read_committed", List.of(tp));
            read(t, bs, "read_uncommitted", List.of(tp));
        }
    }

    /**
     * The last stable offset: a plain (idempotent) producer's records interleaved with a
     * transaction's on one partition. ListOffsets latest by isolation level and a long-lived
     * read_committed consumer's end offset and position while the transaction is open (it stops
     * at the LSO), after its abort (it skips the aborted record: the Fetch aborted-transactions
     * list), and around a second, committed transaction.
     */
    static void lso(T t, String bs) throws Exception {
        String topic = t.topic("");
        TopicPartition tp = new TopicPartition(topic, 0);
        List<TopicPartition> one = List.of(tp);
        try (Admin a = admin(bs);
             KafkaProducer<byte[], byte[]> plain = producer(bs);
             KafkaProducer<byte[], byte[]> tx = txProducer(bs, t.topic("txid"));
             KafkaConsumer<byte[], byte[]> rc = consumer(bs, "isolation.level", "read_committed")) {
            create(a, topic, 1, KEEP);
            rc.assign(one);
            rc.seekToBeginning(one);
            List<Sent> sent = new ArrayList<>(List.of(send(plain, topic, 0, 0, "r0"), send(plain, topic, 0, 1, "r1")));
            plain.flush();
            step(t, "init-transactions", tx::initTransactions);
            tx.beginTransaction();
            sent.add(send(tx, topic, 0, 2, "t0"));
            tx.flush();
            sent.add(send(plain, topic, 0, 3, "r2"));
            plain.flush();
            delivered(t, sent);
            offsetsNow(t, a, "txn 1 open", one);
            drain(t, rc, "read_committed, txn 1 open", one);
            step(t, "abort txn 1", tx::abortTransaction);
            settled(t, a, "after abort", one, 15, 5);
            drain(t, rc, "read_committed, after abort", one);

            sent.clear();
            tx.beginTransaction();
            sent.add(send(tx, topic, 0, 4, "t1"));
            tx.flush();
            sent.add(send(plain, topic, 0, 5, "r3"));
            plain.flush();
            delivered(t, sent);
            offsetsNow(t, a, "txn 2 open", one);
            drain(t, rc, "read_committed, txn 2 open", one);
            step(t, "commit txn 2", tx::commitTransaction);
            settled(t, a, "after commit", one, 15, 8);
            drain(t, rc, "read_committed, after commit", one);
        }
        read(t, bs, "read_committed", List.of(tp));
        read(t, bs, "read_uncommitted", List.of(tp));
    }

    /**
     * Transactional calls out of order, each on a fresh producer so that one error does not
     * decide the next: before initTransactions, commit/abort/sendOffsets without a transaction,
     * begin twice, a transactional method on a non-transactional producer, a transaction timeout
     * above the broker's transaction.max.timeout.ms (the broker's InitProducerId error), and a
     * send inside a transaction to a partition that does not exist and to an invalid topic name
     * (the Java producer always lets the broker auto-create a missing topic).
     */
    static void misuse(T t, String bs) throws Exception {
        String topic = t.topic("");
        String txid = t.topic("txid");
        try (Admin a = admin(bs)) {
            create(a, topic, 1, KEEP);
            try (KafkaProducer<byte[], byte[]> p = txProducer(bs, txid + "-1")) {
                step(t, "begin before init", p::beginTransaction);
                step(t, "commit before init", p::commitTransaction);
                step(t, "init-transactions", p::initTransactions);
                step(t, "commit without begin", p::commitTransaction);
                step(t, "abort without begin", p::abortTransaction);
                step(t, "send-offsets without begin", () -> p.sendOffsetsToTransaction(
                        Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(1)), new ConsumerGroupMetadata(t.topic("group"))));
                step(t, "begin", p::beginTransaction);
                step(t, "begin again", p::beginTransaction);
                step(t, "commit empty transaction", p::commitTransaction);
                step(t, "init-transactions again", p::initTransactions);
            }
            try (KafkaProducer<byte[], byte[]> p = producer(bs)) {
                step(t, "init-transactions on a non-transactional producer", p::initTransactions);
            }
            try (KafkaProducer<byte[], byte[]> p = txProducer(bs, txid + "-2", "transaction.timeout.ms", "900001",
                    "max.block.ms", "5000")) {
                step(t, "init-transactions with timeout above transaction.max.timeout.ms", p::initTransactions);
            }
            try (KafkaProducer<byte[], byte[]> p = txProducer(bs, txid + "-3", "max.block.ms", "3000")) {
                step(t, "init-transactions", p::initTransactions);
                step(t, "begin", p::beginTransaction);
                List<Sent> sent = new ArrayList<>();
                sent.add(send(p, topic, 0, 0, "ok-0"));
                step(t, "flush", p::flush);   // written before the failures below make the transaction abortable
                delivered(t, sent);
                sent.clear();
                try {
                    sent.add(send(p, topic, 5, 1, "no-such-partition"));
                    t.rec("step", "what", "send to partition 5 of 1", "error", null);
                } catch (Exception e) {
                    t.rec("step", kv(err(e), "what", "send to partition 5 of 1"));
                }
                try {
                    sent.add(send(p, "bad topic name!", 0, 2, "invalid-topic"));
                    t.rec("step", "what", "send to an invalid topic name", "error", null);
                } catch (Exception e) {
                    t.rec("step", kv(err(e), "what", "send to an invalid topic name"));
                }
                step(t, "flush", p::flush);
                delivered(t, sent);
                step(t, "commit", p::commitTransaction);
                step(t, "abort", p::abortTransaction);
                step(t, "begin after abort", p::beginTransaction);
                List<Sent> again = new ArrayList<>(List.of(send(p, topic, 0, 3, "ok-3")));
                step(t, "flush", p::flush);
                delivered(t, again);
                step(t, "commit after abort", p::commitTransaction);
            }
            settled(t, a, "end", tps(topic, 0), 15, 4);
            read(t, bs, "read_committed", tps(topic, 0));
            read(t, bs, "read_uncommitted", tps(topic, 0));
        }
    }

    /**
     * DescribeTransactions and ListTransactions (this scenario's transactional ids only: other
     * scenarios run at the same time) for an unknown id, an initialized one (Empty), an ongoing
     * transaction over 3 partitions, a committed and an aborted one; ListTransactions filtered by
     * state and by producer id.
     */
    static void describeList(T t, String bs) throws Exception {
        String ta = t.topic("a"), tb = t.topic("b");
        String txid = t.topic("txid");
        try (Admin a = admin(bs)) {
            create(a, ta, 2, KEEP);
            create(a, tb, 1, KEEP);
            describe(t, a, "unknown id", t.topic("no-such-txid"));
            try (KafkaProducer<byte[], byte[]> p = txProducer(bs, txid, "transaction.timeout.ms", "45000")) {
                step(t, "init-transactions", p::initTransactions);
                TransactionDescription d0 = describe(t, a, "initialized", txid);
                list(t, a, "initialized", txid, null);
                p.beginTransaction();
                List<Sent> sent = new ArrayList<>(List.of(send(p, ta, 0, 0, "x0"), send(p, ta, 1, 1, "x1"), send(p, tb, 0, 2, "x2")));
                p.flush();
                delivered(t, sent);
                TransactionDescription d1 = describe(t, a, "ongoing", txid);
                list(t, a, "ongoing", txid, null);
                list(t, a, "ongoing, filter Ongoing", txid, new ListTransactionsOptions().filterStates(List.of(TransactionState.ONGOING)));
                list(t, a, "ongoing, filter CompleteCommit", txid, new ListTransactionsOptions().filterStates(List.of(TransactionState.COMPLETE_COMMIT)));
                if (d1 != null)
                    list(t, a, "ongoing, filter its producer id", txid, new ListTransactionsOptions().filterProducerIds(List.of(d1.producerId())));
                step(t, "commit", p::commitTransaction);
                settled(t, a, "after commit", tps(ta, 0, ta, 1, tb, 0), 15, 2, 2, 2);
                TransactionDescription d2 = describe(t, a, "committed", txid);
                list(t, a, "committed", txid, null);
                p.beginTransaction();
                sent = new ArrayList<>(List.of(send(p, ta, 1, 3, "y0")));
                p.flush();
                delivered(t, sent);
                step(t, "abort", p::abortTransaction);
                settled(t, a, "after abort", tps(ta, 1), 15, 4);
                TransactionDescription d3 = describe(t, a, "aborted", txid);
                list(t, a, "aborted", txid, null);
                list(t, a, "aborted, filter CompleteAbort", txid, new ListTransactionsOptions().filterStates(List.of(TransactionState.COMPLETE_ABORT)));
                TransactionDescription[] ds = {d0, d1, d2, d3};
                List<Object> rel = new ArrayList<>();
                for (TransactionDescription d : ds)
                    rel.add(d == null || d0 == null ? null : Map.of("same_producer_id", d.producerId() == d0.producerId(),
                                                                    "epoch_delta", d.producerEpoch() - d0.producerEpoch()));
                t.rec("relation", "what", "initialized, ongoing, committed, aborted", "against_initialized", rel);
            }
        }
    }

    static void list(T t, Admin a, String at, String txid, ListTransactionsOptions o) {
        try {
            Collection<TransactionListing> all = a.listTransactions(o == null ? new ListTransactionsOptions() : o).all().get(20, TimeUnit.SECONDS);
            List<Object> mine = new ArrayList<>();
            for (TransactionListing l : all)
                if (l.transactionalId().equals(txid))
                    mine.add(Map.of("transactional_id", l.transactionalId(), "producer_id", l.producerId(), "state", l.state().toString()));
            t.rec("list-txns", "at", at, "mine", mine);
        } catch (Exception e) {
            t.rec("list-txns", kv(err(e), "at", at));
        }
    }
}
