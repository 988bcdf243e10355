package dev.sluice.connect;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.source.SourceConnector;

/**
 * Reads the lines of one file into one topic, remembering the byte position after the last line
 * it handed to Connect as the source offset. A stand-in for Kafka's FileStreamSource, whose
 * artifact (connect-file) the package registry here does not serve; written for these tests.
 * Config: file, topic, batch.lines (default 500).
 */
public class LineFileSource extends SourceConnector {
    static final ConfigDef CONFIG = new ConfigDef()
        .define("file", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "file to read")
        .define("topic", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "topic to write")
        .define("batch.lines", ConfigDef.Type.INT, 500, ConfigDef.Importance.LOW, "most lines per poll");

    private Map<String, String> props;

    @Override public String version() { return "1"; }
    @Override public void start(Map<String, String> props) { CONFIG.parse(props); this.props = props; }
    @Override public Class<? extends Task> taskClass() { return LineFileSourceTask.class; }
    @Override public List<Map<String, String>> taskConfigs(int maxTasks) {
        List<Map<String, String>> out = new ArrayList<>();
        out.add(props);   // one file, one task
        return out;
    }
    @Override public void stop() { }
    @Override public ConfigDef config() { return CONFIG; }
}
