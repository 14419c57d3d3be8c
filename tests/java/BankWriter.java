import java.io.File;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * What a custodian bank's Java side does with fundwatch's contract, for fundwatch's tests.
 *
 *   parse FILE...        parse every .avsc with ONE Schema.Parser (as a bank's build does); print
 *                        "full.Name fingerprint" (CRC-64-AVRO of the Parsing Canonical Form, little-endian hex)
 *   produce BOOTSTRAP TOPIC_BASE CODECS SCHEMA RECORDS
 *                        read RECORDS (Avro JSON, one per line) with the writer SCHEMA, encode each with
 *                        Avro's BinaryMessageEncoder (single-object encoding) and send them to TOPIC_BASE + codec
 *                        with a kafka-clients producer per codec (compression.type = codec; CODECS comma-separated)
 */
public final class BankWriter {
    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("parse")) {
            Schema.Parser parser = new Schema.Parser();
            for (int i = 1; i < args.length; i++) {
                Schema s = parser.parse(new File(args[i]));
                if (s.getType() == Schema.Type.RECORD) {
                    System.out.println(s.getFullName() + " " + hexLe(SchemaNormalization.parsingFingerprint64(s)));
                }
            }
            return;
        }
        if (args.length == 6 && args[0].equals("produce")) {
            produce(args[1], args[2], args[3].split(","), new Schema.Parser().parse(new File(args[4])), new File(args[5]));
            return;
        }
        System.err.println("usage: BankWriter parse FILE... | produce BOOTSTRAP TOPIC_BASE CODECS SCHEMA RECORDS");
        System.exit(2);
    }

    static String hexLe(long fp) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < 8; i++) {
            b.append(String.format("%02x", (fp >>> (8 * i)) & 0xff));
        }
        return b.toString();
    }

    static void produce(String bootstrap, String topicBase, String[] codecs, Schema schema, File records) throws Exception {
        GenericDatumReader<GenericRecord> reader = new GenericDatumReader<>(schema);
        BinaryMessageEncoder<GenericRecord> encoder = new BinaryMessageEncoder<>(GenericData.get(), schema);
        List<GenericRecord> rows = new ArrayList<>();
        for (String line : Files.readAllLines(records.toPath(), StandardCharsets.UTF_8)) {
            if (!line.isBlank()) {
                rows.add(reader.read(null, DecoderFactory.get().jsonDecoder(schema, line)));
            }
        }
        for (String codec : codecs) {
            Properties p = new Properties();
            p.put("bootstrap.servers", bootstrap);
            p.put("compression.type", codec);
            p.put("acks", "all");
            p.put("linger.ms", "50");
            p.put("key.serializer", ByteArraySerializer.class.getName());
            p.put("value.serializer", ByteArraySerializer.class.getName());
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
                List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
                for (GenericRecord r : rows) {
                    ByteBuffer buf = encoder.encode(r);
                    byte[] value = new byte[buf.remaining()];
                    buf.get(value);
                    byte[] key = r.get("platform_id").toString().getBytes(StandardCharsets.UTF_8);
                    sent.add(producer.send(new ProducerRecord<>(topicBase + codec, key, value)));
                }
                producer.flush();
                for (java.util.concurrent.Future<?> f : sent) {
                    f.get();  // every record acknowledged, or the test fails here
                }
            }
            System.out.println(topicBase + codec + " " + rows.size());
        }
    }
}
