package dev.sluice.connect;

import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.Map;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;

/** One task of LineFileSink: each put() is one append (O_APPEND), each flush() an fsync. */
public class LineFileSinkTask extends SinkTask {
    private String file;
    private FileOutputStream out;

    @Override public String version() { return "1"; }

    @Override public void start(Map<String, String> props) {
        file = props.get("file");
        try {
            out = new FileOutputStream(file, true);
        } catch (IOException e) {
            throw new ConnectException("opening " + file, e);
        }
    }

    @Override public void put(Collection<SinkRecord> records) {
        if (records.isEmpty()) return;
        StringBuilder sb = new StringBuilder();
        for (SinkRecord r : records) {
            sb.append(r.value() == null ? "" : r.value().toString()).append('\n');
        }
        try {
            out.write(sb.toString().getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new ConnectException("appending to " + file, e);
        }
    }

    @Override public void flush(Map<TopicPartition, OffsetAndMetadata> offsets) {
        try {
            out.getFD().sync();
        } catch (IOException e) {
            throw new ConnectException("syncing " + file, e);
        }
    }

    @Override public void stop() {
        try { if (out != null) out.close(); } catch (IOException ignored) { }
    }
}
