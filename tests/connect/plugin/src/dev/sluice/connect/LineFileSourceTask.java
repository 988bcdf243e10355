package dev.sluice.connect;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/** One task of LineFileSource: complete lines only (a line without its newline waits). */
public class LineFileSourceTask extends SourceTask {
    private String file;
    private String topic;
    private int batchLines;
    private Map<String, Object> partition;
    private long position;          // byte position after the last line handed out
    private RandomAccessFile in;
    private final byte[] buf = new byte[64 * 1024];
    private final java.io.ByteArrayOutputStream pending = new java.io.ByteArrayOutputStream();
    private long readPosition;      // byte position of the next read from the file

    @Override public String version() { return "1"; }

    @Override public void start(Map<String, String> props) {
        file = props.get("file");
        topic = props.get("topic");
        batchLines = Integer.parseInt(props.getOrDefault("batch.lines", "500"));
        partition = Collections.singletonMap("file", file);
        Map<String, Object> stored = context.offsetStorageReader().offset(partition);
        position = 0;
        if (stored != null && stored.get("position") != null) {
            position = ((Number) stored.get("position")).longValue();
        }
        readPosition = position;
    }

    @Override public List<SourceRecord> poll() throws InterruptedException {
        try {
            if (in == null) {
                java.io.File f = new java.io.File(file);
                if (!f.exists()) { Thread.sleep(200); return null; }
                in = new RandomAccessFile(f, "r");
                in.seek(readPosition);
            }
            List<SourceRecord> out = new ArrayList<>();
            while (out.size() < batchLines) {
                // Hand out the complete lines already buffered.
                byte[] data = pending.toByteArray();
                int start = 0;
                for (int i = 0; i < data.length && out.size() < batchLines; i++) {
                    if (data[i] == '\n') {
                        String line = new String(data, start, i - start, StandardCharsets.UTF_8);
                        position += i - start + 1;
                        out.add(new SourceRecord(partition, Collections.singletonMap("position", position),
                                                 topic, null, null, null, Schema.STRING_SCHEMA, line));
                        start = i + 1;
                    }
                }
                pending.reset();
                pending.write(data, start, data.length - start);
                if (out.size() >= batchLines) break;
                int n = in.read(buf);
                if (n <= 0) break;
                readPosition += n;
                pending.write(buf, 0, n);
            }
            if (out.isEmpty()) { Thread.sleep(100); return null; }
            return out;
        } catch (IOException e) {
            throw new ConnectException("reading " + file, e);
        }
    }

    @Override public synchronized void stop() {
        try { if (in != null) in.close(); } catch (IOException ignored) { }
    }
}
