// Health probe for Kafka used by scripts/stack.
// Uses the AdminClient from kafka-clients (on the broker's classpath) to fetch
// cluster metadata: prints "brokers=<n> cluster=<id> topics=<n> controller=<id>".
// Usage: java -cp "<kafka lib>/*:<dir>" KafkaProbe HOST:PORT [CLIENT_PROPS...]
// Each CLIENT_PROPS is either a key=value client property (e.g.
// security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512, sasl.jaas.config=...,
// ssl.truststore.type=PEM, ssl.truststore.location=...) or the path of a
// properties file holding such settings (preferred for secrets: nothing in argv).
// --expect-brokers=N: also require N registered brokers and every partition of every topic
// (internal ones included) with its full replica set in the ISR; prints under_replicated=K.
// Exit 0 when the cluster answered with at least one broker (and the above), 1 otherwise.
import java.io.File;
import java.io.FileInputStream;
import java.io.InputStream;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

public class KafkaProbe {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args.length > 0 ? args[0] : "127.0.0.1:9092");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "stack-probe");
        int expectBrokers = 0;
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            if (a.startsWith("--expect-brokers=")) {
                expectBrokers = Integer.parseInt(a.substring("--expect-brokers=".length()));
                continue;
            }
            File f = new File(a);
            if (f.isFile()) {
                try (InputStream in = new FileInputStream(f)) {
                    props.load(in);
                } catch (Exception e) {
                    System.err.println("kafka probe: cannot read " + a + ": " + e);
                    System.exit(2);
                }
            } else if (a.indexOf('=') > 0) {
                props.put(a.substring(0, a.indexOf('=')), a.substring(a.indexOf('=') + 1));
            } else {
                System.err.println("kafka probe: not a file nor key=value: " + a);
                System.exit(2);
            }
        }
        Admin admin = Admin.create(props);
        int rc = 1;
        try {
            DescribeClusterResult cluster = admin.describeCluster();
            int brokers = cluster.nodes().get(5, TimeUnit.SECONDS).size();
            String clusterId = cluster.clusterId().get(5, TimeUnit.SECONDS);
            org.apache.kafka.common.Node ctl = cluster.controller().get(5, TimeUnit.SECONDS);
            String controller = ctl == null ? "none" : String.valueOf(ctl.id());
            java.util.Set<String> names = admin.listTopics(
                    new org.apache.kafka.clients.admin.ListTopicsOptions().listInternal(true))
                    .names().get(5, TimeUnit.SECONDS);
            int topics = names.size();
            String extra = "";
            boolean complete = true;
            if (expectBrokers > 0) {
                int under = 0;
                int partitions = 0;
                for (org.apache.kafka.clients.admin.TopicDescription d :
                        admin.describeTopics(names).allTopicNames().get(10, TimeUnit.SECONDS).values()) {
                    for (org.apache.kafka.common.TopicPartitionInfo p : d.partitions()) {
                        partitions++;
                        if (p.leader() == null || p.isr().size() < p.replicas().size()) under++;
                    }
                }
                extra = " partitions=" + partitions + " under_replicated=" + under;
                complete = brokers >= expectBrokers && under == 0;
            }
            System.out.println("brokers=" + brokers + " cluster=" + clusterId
                    + " topics=" + topics + " controller=" + controller + extra);
            rc = brokers > 0 && complete ? 0 : 1;
        } catch (Exception e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            System.err.println("kafka probe failed: " + c);
        } finally {
            admin.close(Duration.ofSeconds(1));
        }
        System.exit(rc);
    }
}
