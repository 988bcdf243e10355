package dev.sluice.connect;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.sink.SinkConnector;

/**
 * Appends the value of every record of its topics to one file, a line each, and flushes the file
 * before Connect commits the consumed offsets (so a crash repeats lines, never loses them).
 * A stand-in for Kafka's FileStreamSink (connect-file is not served here); written for these tests.
 * Config: file, topics.
 */
public class LineFileSink extends SinkConnector {
    static final ConfigDef CONFIG = new ConfigDef()
        .define("file", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "file to append to");

    private Map<String, String> props;

    @Override public String version() { return "1"; }
    @Override public void start(Map<String, String> props) { CONFIG.parse(props); this.props = props; }
    @Override public Class<? extends Task> taskClass() { return LineFileSinkTask.class; }
    @Override public List<Map<String, String>> taskConfigs(int maxTasks) {
        List<Map<String, String>> out = new ArrayList<>();
        for (int i = 0; i < maxTasks; i++) out.add(props);
        return out;
    }
    @Override public void stop() { }
    @Override public ConfigDef config() { return CONFIG; }
}
