// Health probe for Cassandra used by scripts/stack.
// Connects over CQL (DataStax driver 3.x, which cassandra-all already ships as
// cassandra-driver-core-*-shaded) and prints system.local's release_version.
// Usage: java -cp "<cassandra lib>/*:<dir>" CqlProbe HOST PORT
// Exit 0 and prints the version when a query succeeded, exit 1 otherwise.
import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.Row;
import com.datastax.driver.core.Session;
import com.datastax.driver.core.SocketOptions;

public class CqlProbe {
    public static void main(String[] args) {
        String host = args.length > 0 ? args[0] : "127.0.0.1";
        int port = args.length > 1 ? Integer.parseInt(args[1]) : 9042;
        try (Cluster cluster = Cluster.builder()
                .addContactPoint(host)
                .withPort(port)
                .withoutMetrics()
                .withoutJMXReporting()
                .withSocketOptions(new SocketOptions()
                        .setConnectTimeoutMillis(3000)
                        .setReadTimeoutMillis(5000))
                .build();
             Session session = cluster.connect()) {
            Row row = session.execute("SELECT release_version FROM system.local").one();
            System.out.println(row.getString("release_version"));
            System.exit(0);
        } catch (Exception e) {
            System.err.println("cql probe failed: " + e);
            System.exit(1);
        }
    }
}
