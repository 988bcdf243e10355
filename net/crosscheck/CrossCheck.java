// Cross-check of sluice's codec against Apache Kafka's own generated message classes.
//
// Reads lines "<MessageName> <version> <hex>" (from net/examples/dump_vectors.rs), parses each
// with org.apache.kafka.common.message.<MessageName>Data, requires every byte to be consumed,
// re-serializes, and requires the bytes to be identical. Run by `cargo xtask crosscheck`:
//   java -cp kafka-clients-4.4.0.jar CrossCheck.java vectors.txt
// (Java 17+, single-file source launch; the jar is the one codegen reads its schemas from.)

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HexFormat;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.Message;
import org.apache.kafka.common.protocol.ObjectSerializationCache;
import org.apache.kafka.common.protocol.Readable;

public class CrossCheck {
    public static void main(String[] args) throws Exception {
        int checked = 0;
        int failed = 0;
        for (String line : Files.readAllLines(Path.of(args[0]))) {
            String[] parts = line.split(" ");
            String name = parts[0];
            short version = Short.parseShort(parts[1]);
            byte[] input = parts.length > 2 ? HexFormat.of().parseHex(parts[2]) : new byte[0];
            checked++;
            try {
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
        System.exit(failed == 0 ? 0 : 1);
    }
}
