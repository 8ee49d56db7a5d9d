import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.coordinator.common.runtime.CoordinatorRecord;
import org.apache.kafka.coordinator.group.GroupCoordinatorRecordSerde;

/**
 * __consumer_offsets as Apache Kafka's group coordinator reads it: every record
 * from the beginning to the end offsets of the moment, through Kafka's own
 * GroupCoordinatorRecordSerde, which throws on bytes it cannot read. Compiled
 * with the Java test programs that check the records odradek writes.
 */
public final class OffsetsTopic {
  private OffsetsTopic() {}

  public static List<CoordinatorRecord> readAll(String bootstrap) {
    KafkaConsumer<byte[], byte[]> r = new KafkaConsumer<>(Map.of(
        "bootstrap.servers", bootstrap,
        "key.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer",
        "value.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer"));
    List<CoordinatorRecord> out = new ArrayList<>();
    try (r) {
      List<TopicPartition> tps = new ArrayList<>();
      for (PartitionInfo pi : r.partitionsFor("__consumer_offsets")) tps.add(new TopicPartition(pi.topic(), pi.partition()));
      r.assign(tps);
      r.seekToBeginning(tps);
      Map<TopicPartition, Long> ends = r.endOffsets(tps);
      GroupCoordinatorRecordSerde serde = new GroupCoordinatorRecordSerde();
      long stop = System.currentTimeMillis() + 20000;
      while (System.currentTimeMillis() < stop) {
        for (ConsumerRecord<byte[], byte[]> rec : r.poll(Duration.ofMillis(100)))
          out.add(serde.deserialize(ByteBuffer.wrap(rec.key()), rec.value() == null ? null : ByteBuffer.wrap(rec.value())));
        boolean done = true;
        for (TopicPartition tp : tps) if (r.position(tp) < ends.get(tp)) done = false;
        if (done) break;
      }
    }
    return out;
  }

  /** How many records of each key type: "SomethingKey", "SomethingKey-tombstone", or with
   * {@code versions}, "SomethingKey-vN" for values of version N. */
  public static Map<String, Integer> kinds(String bootstrap, boolean versions) {
    Map<String, Integer> kinds = new TreeMap<>();
    for (CoordinatorRecord cr : readAll(bootstrap)) {
      String k = cr.key().getClass().getSimpleName()
          + (cr.value() == null ? "-tombstone" : versions ? "-v" + cr.value().version() : "");
      kinds.merge(k, 1, Integer::sum);
    }
    return kinds;
  }
}
