// Cross-check of sluice's codec and error codes against Apache Kafka's own classes.
//
// Messages: reads lines "<MessageName> <version> <hex>" (from net/examples/dump_vectors.rs),
// parses each with org.apache.kafka.common.message.<MessageName>Data, requires every byte to be
// consumed, re-serializes, and requires the bytes to be identical. Lines
// "MetadataRecord:<Type> <version> <hex>" are metadata-log record values (the frame
// MetadataRecordSerde writes): Kafka's org.apache.kafka.metadata.MetadataRecordSerde reads each
// (every byte, the right <Type>Record class and version) and must write the same bytes back.
// Error codes: reads lines "<code> <NAME> <retriable>" (from net/examples/dump_error_codes.rs,
// net's whole ErrorCode table) and compares them with org.apache.kafka.common.protocol.Errors:
// every code on both sides, with the same name and the same retriable flag (Kafka: the error's
// exception is a RetriableException).
// Run by `cargo xtask crosscheck`:
//   java -cp kafka-clients-4.4.0.jar:kafka-metadata-4.4.0.jar:kafka-server-common-4.4.0.jar:\
//     slf4j-api.jar CrossCheck.java vectors.txt errors.txt
// (Java 17+, single-file source launch; kafka-clients and kafka-metadata are the jars codegen
// reads its schemas from, MetadataRecordSerde's base class is in kafka-server-common, and
// Errors needs slf4j-api, a runtime dependency of kafka-clients.)

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.Map;
import java.util.TreeMap;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.Message;
import org.apache.kafka.common.protocol.ObjectSerializationCache;
import org.apache.kafka.common.protocol.Readable;
import org.apache.kafka.metadata.MetadataRecordSerde;
import org.apache.kafka.server.common.ApiMessageAndVersion;

public class CrossCheck {
    public static void main(String[] args) throws Exception {
        boolean messagesOk = checkMessages(Path.of(args[0]));
        boolean errorsOk = checkErrors(Path.of(args[1]));
        System.exit(messagesOk && errorsOk ? 0 : 1);
    }

    static boolean checkMessages(Path vectors) throws Exception {
        int checked = 0;
        int failed = 0;
        for (String line : Files.readAllLines(vectors)) {
            String[] parts = line.split(" ");
            String name = parts[0];
            short version = Short.parseShort(parts[1]);
            byte[] input = parts.length > 2 ? HexFormat.of().parseHex(parts[2]) : new byte[0];
            checked++;
            try {
                if (name.startsWith("MetadataRecord:")) {
                    checkMetadataRecord(name.substring("MetadataRecord:".length()), version, input);
                    continue;
                }
                Class<?> type = Class.forName("org.apache.kafka.common.message." + name + "Data");
                ByteBufferAccessor reader = new ByteBufferAccessor(ByteBuffer.wrap(input));
                Message message = (Message) type.getConstructor(Readable.class, short.class)
                        .newInstance(reader, version);
                if (reader.remaining() != 0) {
                    throw new IllegalStateException(reader.remaining() + " bytes left unread");
                }
                ObjectSerializationCache cache = new ObjectSerializationCache();
                int size = message.size(cache, version);
                ByteBuffer buffer = ByteBuffer.allocate(size);
                message.write(new ByteBufferAccessor(buffer), cache, version);
                byte[] output = buffer.array();
                if (!Arrays.equals(input, output)) {
                    throw new IllegalStateException("re-serialized differently:\n  sluice "
                            + parts[2] + "\n  kafka  " + HexFormat.of().formatHex(output));
                }
            } catch (Throwable e) {
                failed++;
                Throwable cause = e.getCause() != null ? e.getCause() : e;
                if (failed <= 40) {
                    System.out.println("FAIL " + name + " v" + version + ": " + cause);
                }
            }
        }
        System.out.println("crosscheck: " + checked + " encodings, " + failed + " rejected or changed by Kafka");
        return failed == 0;
    }

    static void checkMetadataRecord(String type, short version, byte[] input) {
        ByteBufferAccessor reader = new ByteBufferAccessor(ByteBuffer.wrap(input));
        ApiMessageAndVersion record = MetadataRecordSerde.INSTANCE.read(reader, input.length);
        if (reader.remaining() != 0) {
            throw new IllegalStateException(reader.remaining() + " bytes left unread");
        }
        String kafkaType = record.message().getClass().getSimpleName();
        if (!kafkaType.equals(type + "Record") || record.version() != version) {
            throw new IllegalStateException("read as " + kafkaType + " v" + record.version());
        }
        ObjectSerializationCache cache = new ObjectSerializationCache();
        ByteBuffer buffer = ByteBuffer.allocate(MetadataRecordSerde.INSTANCE.recordSize(record, cache));
        MetadataRecordSerde.INSTANCE.write(record, cache, new ByteBufferAccessor(buffer));
        if (buffer.remaining() != 0 || !Arrays.equals(input, buffer.array())) {
            throw new IllegalStateException("re-serialized differently:\n  sluice "
                    + HexFormat.of().formatHex(input) + "\n  kafka  "
                    + HexFormat.of().formatHex(buffer.array()));
        }
    }

    static boolean checkErrors(Path table) throws Exception {
        Map<Short, String> sluice = new TreeMap<>();
        int differences = 0;
        for (String line : Files.readAllLines(table)) {
            String[] parts = line.split(" ");
            if (parts.length != 3 || !(parts[2].equals("true") || parts[2].equals("false"))) {
                System.out.println("FAIL error table line not \"<code> <NAME> <retriable>\": " + line);
                differences++;
                continue;
            }
            String entry = parts[1] + " retriable=" + parts[2];
            if (sluice.put(Short.parseShort(parts[0]), entry) != null) {
                System.out.println("FAIL error code " + parts[0] + " listed twice by sluice");
                differences++;
            }
        }
        Map<Short, String> kafka = new TreeMap<>();
        for (Errors e : Errors.values()) {
            boolean retriable = e.exception() instanceof RetriableException;
            kafka.put(e.code(), e.name() + " retriable=" + retriable);
        }
        for (Map.Entry<Short, String> k : kafka.entrySet()) {
            String s = sluice.get(k.getKey());
            if (!k.getValue().equals(s)) {
                System.out.println("FAIL error code " + k.getKey() + ": kafka " + k.getValue()
                        + ", sluice " + (s == null ? "(missing)" : s));
                differences++;
            }
        }
        for (Map.Entry<Short, String> r : sluice.entrySet()) {
            if (!kafka.containsKey(r.getKey())) {
                System.out.println("FAIL error code " + r.getKey() + ": sluice " + r.getValue()
                        + ", kafka (missing)");
                differences++;
            }
        }
        System.out.println("crosscheck: " + kafka.size() + " Kafka error codes, " + sluice.size()
                + " in sluice's table, " + differences + " differences");
        return differences == 0;
    }
}
