// Health probe for Kafka used by scripts/stack.
// Uses the AdminClient from kafka-clients (on the broker's classpath) to fetch
// cluster metadata: prints "brokers=<n> controller=<id> cluster=<id> topics=<n>".
// Usage: java -cp "<kafka lib>/*:<dir>" KafkaProbe HOST:PORT
// Exit 0 when the cluster answered with at least one broker, 1 otherwise.
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
        Admin admin = Admin.create(props);
        int rc = 1;
        try {
            DescribeClusterResult cluster = admin.describeCluster();
            int brokers = cluster.nodes().get(5, TimeUnit.SECONDS).size();
            String clusterId = cluster.clusterId().get(5, TimeUnit.SECONDS);
            org.apache.kafka.common.Node ctl = cluster.controller().get(5, TimeUnit.SECONDS);
            String controller = ctl == null ? "none" : String.valueOf(ctl.id());
            int topics = admin.listTopics().names().get(5, TimeUnit.SECONDS).size();
            System.out.println("brokers=" + brokers + " cluster=" + clusterId
                    + " topics=" + topics + " controller=" + controller);
            rc = brokers > 0 ? 0 : 1;
        } catch (Exception e) {
            System.err.println("kafka probe failed: " + e);
        } finally {
            admin.close(Duration.ofSeconds(1));
        }
        System.exit(rc);
    }
}
